"""The lockstep trainer: its config, batches and augmentation, metrics, resumption."""

"""The experiment on disk: safetensors epochs and metadata (write and read), training progress,
stored results, the disk cache, the probe images, imports of foreign weights."""

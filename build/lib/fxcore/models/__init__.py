"""The architectures and how a model is built from its name and loaded from a weights file."""

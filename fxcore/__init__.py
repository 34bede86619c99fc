"""fxcore: train identical networks on different labels in lockstep and compare how they differ."""

__version__ = "0.1.0"

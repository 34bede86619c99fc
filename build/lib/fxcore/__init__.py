"""fxcore: train identical networks on different labels in lockstep and compare how they differ."""

from fxcore.core import threads as _threads

_threads.configure()  # before any fxcore module imports torch: OpenMP reads it once, at load

__version__ = "0.1.0"

"""Every error fxcore raises for the user, in one place (torch-free, imports nothing).

Each class derives from :class:`FxcoreError`, whose message is written for the user: it says what
is wrong and what to do. The CLI prints it as one ``error:`` line and the app as one message;
anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class FxcoreError(Exception):
    """Base of every fxcore error: the message is for the user (what is wrong, what to do)."""


class DataError(FxcoreError):
    """A dataset cannot be read; the message says what is wrong and what to do."""


class DataUnavailable(DataError):
    """An experiment's dataset is not on this machine (or no copy matches its fingerprint)."""


class CheckpointError(FxcoreError):
    """A checkpoint, run or experiment cannot be used; the message names the file and the problem."""


class ModelError(FxcoreError):
    """A model cannot be built or its weights cannot be loaded."""


class StatsError(FxcoreError):
    """A checkpoint tensor cannot be read or the inputs do not fit; the message says what to do."""


class SimilarityError(FxcoreError):
    """The inputs of a similarity measure do not fit together."""


class ActivationError(FxcoreError, ValueError):
    """A layer cannot be captured or explained (unknown name, tuple output, never ran)."""


class ImageInputError(FxcoreError, ValueError):
    """An upload is not a usable image; the message tells the user what to do."""


class FaceDetectorUnavailable(FxcoreError, RuntimeError):
    """OpenCV's Haar cascades cannot be loaded (e.g. OpenCV 5 dropped them)."""


class DeviceError(FxcoreError, RuntimeError):
    """The requested --device is not available on this machine."""


class TrainingInterrupted(FxcoreError):
    """Ctrl-C: the last complete epoch is on disk; the message says how to resume."""


class ProbeError(FxcoreError, ValueError):
    """Features and labels do not fit a linear probe; the message says what to do."""


class EvalError(FxcoreError):
    """Images or labels cannot be evaluated (``fxcore eval``); the message says what to do."""

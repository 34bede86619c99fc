"""argparse value types shared by every command (torch-free): errors name the value, one line."""

from __future__ import annotations

import argparse
import math

DEFAULT_ROOT = "checkpoints"  # where experiments live unless --root/--out says otherwise
ROOT_HELP = f"folder holding the experiments (default: {DEFAULT_ROOT})"
JSON_HELP = "print the result as one JSON document on stdout (messages go to stderr)"


def int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low}")
        return value

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def fraction(text: str) -> float:
    """A number in (0, 0.5): a share carved from a split."""
    value = positive_float(text)
    if value >= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 0.5)")
    return value


def epoch_range(text: str) -> tuple[int | None, int | None]:
    """``A:B`` inclusive, either side optional (``:5``, ``3:``)."""
    a, sep, b = text.partition(":")
    try:
        lo = int(a) if a else None
        hi = int(b) if b else (lo if not sep else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an epoch range like 0:10") from None
    if (lo is not None and lo < 0) or (hi is not None and lo is not None and hi < lo):
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= A <= B")
    return lo, hi

"""How the charts show their numbers: colour scales for layer x epoch heatmaps, intervals as text,
and the notes a chart's numbers need. Plain functions of arrays (no Streamlit call)."""

from __future__ import annotations

import numpy as np

ROW_SCALES = {
    "row": "each layer to its own maximum",
    "log": "log scale",
    "linear": "one linear scale",
}


def row_scaled(m: np.ndarray, scale: str) -> tuple[np.ndarray, float | None, float | None, str]:
    """What a layer x epoch heatmap of non-negative values shows under a colour scale: the
    values, their range and the colour bar's title. ``row``: each row over its own maximum (one
    layer far larger than the rest no longer flattens every other row); ``log``: log10 (zeros
    blank); ``linear``: as they are."""
    m = np.asarray(m, np.float64)
    if scale == "row":
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.where(np.isfinite(m), m, -np.inf).max(axis=1, keepdims=True)
            z = np.where(peak > 0, m / np.where(peak > 0, peak, 1.0), 0.0)
        return z, 0.0, 1.0, "share of the layer's maximum"
    if scale == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(m > 0, np.log10(np.where(m > 0, m, 1.0)), np.nan)
        return z, None, None, "log₁₀"
    finite = m[np.isfinite(m)]
    return m, 0.0, float(finite.max()) if finite.size else 1.0, ""


def interval(value: float, low: float, high: float, digits: int = 3) -> str:
    """One precision rule for every interval the app prints: ``0.999 [0.998, 1.000]``."""
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


UNBIASED_CKA_NOTE = (
    "The unbiased minibatch CKA estimator can come out slightly below 0 for unrelated "
    "representations (and so can its interval): read values near 0 as 0."
)

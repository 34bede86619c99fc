"""Reference implementations the tests check fxcore against (not part of the library)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fxcore.measures.stats import PathLike, StatsError, load_tensor
from fxcore.measures.uncertainty import LEVEL, half_sample_ci, minibatch_cka, permuted_null


def mean_var_reference(paths: Sequence[PathLike], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference for :func:`mean_var`: stack every epoch (float64), then ``mean``/``var``."""
    if len(paths) == 0:
        raise StatsError("no checkpoint paths given; pass one safetensors file per epoch.")
    stack = np.stack([load_tensor(p, key) for p in paths])  # (E, *shape)
    return stack.mean(0).astype(np.float32), stack.var(0).astype(np.float32)


def cka_estimate(
    k: np.ndarray,
    ll: np.ndarray,
    batch: int = 32,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float]:
    """Minibatch CKA with its half-sampling interval over images and the permuted-pairing null.

    Returns ``value``, ``low``, ``high`` and ``null``.
    """
    value = minibatch_cka(k, ll, batch)
    low, high = half_sample_ci(
        lambda idx: minibatch_cka(k, ll, batch, idx), k.shape[0], value, n_resamples, seed, level
    )
    return {"value": value, "low": low, "high": high, "null": permuted_null(k, ll, batch, seed)}

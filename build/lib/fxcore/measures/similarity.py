"""How far weights move and how alike two runs stay: drift, update size, cosine, CKA, localisation.

Weight dynamics stream from per-epoch safetensors files block by block (see :mod:`fxcore.measures.stats`),
accumulating float64 sums, so memory stays at a few blocks however large the layer. Reading
errors raise :class:`fxcore.measures.stats.StatsError`; bad inputs here raise :class:`SimilarityError`.

Representation similarity is linear CKA (Kornblith et al. 2019) with the biased or the unbiased
HSIC estimator (Song et al. 2012), and the minibatch form of Nguyen et al. 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np

from fxcore.core.errors import SimilarityError  # noqa: F401 - re-exported
from fxcore.measures.stats import PathLike, block_ranges, epoch_infos, open_fds, read_block

_BLOCK_ELEMS = 65_536


def _dynamics(runs: Sequence[Sequence[PathLike]], key: str, cross: bool) -> dict[str, np.ndarray]:
    """One streamed pass over epochs of one or two runs for ``key`` (float64 sums per epoch).

    Returns per run ``r``: ``sq_drift{r}`` = ||W_t - W_0||^2, ``sq_update{r}`` =
    ||W_t - W_{t-1}||^2, ``sq_norm{r}`` = ||W_t||^2, and with ``cross`` ``dot`` = <A_t, B_t> and
    ``dot_delta`` = <A_t - A_0, B_t - B_0> (the two updates from the init).
    Two runs are cut to their common number of epochs.
    """
    n_ep = min(len(r) for r in runs)
    infos = [epoch_infos(list(r)[:n_ep], key) for r in runs]
    if len(infos) == 2 and infos[0][0].shape != infos[1][0].shape:
        raise SimilarityError(
            f"{key!r} has shape {infos[0][0].shape} in run A but {infos[1][0].shape} in run B; "
            "compare runs of the same model."
        )
    numel = infos[0][0].numel
    block = max(1, min(_BLOCK_ELEMS, numel))
    out = {f"{n}{r}": np.zeros(n_ep) for n in ("sq_drift", "sq_update", "sq_norm") for r in "ab"}
    out["dot"], out["dot_delta"] = np.zeros(n_ep), np.zeros(n_ep)
    with ExitStack() as stack:
        files = [open_fds(r, stack) for r in infos]
        first = np.empty((len(runs), block))  # W_0 block per run
        prev, cur, diff = np.empty_like(first), np.empty_like(first), np.empty(block)
        for s, e in block_ranges(numel, block):
            n = e - s
            for t in range(n_ep):
                for r, tag in enumerate("ab"[: len(runs)]):
                    read_block(files[r][t], infos[r][t], s, e, cur[r, :n])
                    c = cur[r, :n]
                    out[f"sq_norm{tag}"][t] += np.dot(c, c)
                    if t == 0:
                        first[r, :n] = c
                    else:
                        np.subtract(c, first[r, :n], out=diff[:n])
                        out[f"sq_drift{tag}"][t] += np.dot(diff[:n], diff[:n])
                        np.subtract(c, prev[r, :n], out=diff[:n])
                        out[f"sq_update{tag}"][t] += np.dot(diff[:n], diff[:n])
                if cross:
                    out["dot"][t] += np.dot(cur[0, :n], cur[1, :n])
                    if t > 0:
                        np.subtract(cur[0, :n], first[0, :n], out=diff[:n])
                        out["dot_delta"][t] += np.dot(diff[:n], cur[1, :n] - first[1, :n])
                prev, cur = cur, prev  # this epoch's block becomes "previous"
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (e.g. drift of a bias initialised to zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def drift(paths: Sequence[PathLike], key: str) -> np.ndarray:
    """Relative drift ``||W_t - W_0||_F / ||W_0||_F`` per epoch, shape (E,); NaN if W_0 = 0."""
    d = _dynamics([paths], key, cross=False)
    return _ratio(np.sqrt(d["sq_drifta"]), np.full(len(paths), np.sqrt(d["sq_norma"][0])))


def update_size(paths: Sequence[PathLike], key: str) -> np.ndarray:
    """Step size ``||W_t - W_{t-1}||_F`` per epoch, shape (E,), 0 for epoch 0."""
    return np.sqrt(_dynamics([paths], key, cross=False)["sq_updatea"])


def cross_cosine(paths_a: Sequence[PathLike], paths_b: Sequence[PathLike], key: str) -> np.ndarray:
    """Cosine similarity of the two runs' flattened weights per common epoch, shape (E,)."""
    d = _dynamics([paths_a, paths_b], key, cross=True)
    return _ratio(d["dot"], np.sqrt(d["sq_norma"] * d["sq_normb"]))


def weight_dynamics(
    paths_a: Sequence[PathLike], paths_b: Sequence[PathLike], keys: Sequence[str]
) -> dict[str, dict[str, list[float]]]:
    """All per-epoch weight measures for two runs, reading each tensor once per epoch.

    For each key: ``drift_a``, ``drift_b`` (relative drift), ``update_a``, ``update_b``
    (step norms), ``cosine`` (A vs B), ``norm_a``, ``norm_b`` (``||W_t||_F``). Lists cover the
    epochs both runs have; undefined ratios (zero norm) are NaN.

    Update geometry from the init: ``update_cosine`` = cos(dA, dB) with dA = A_t - A_0, and
    ``common_share`` = ||(dA + dB)/2||^2 / (||(dA + dB)/2||^2 + ||(dA - dB)/2||^2), the share of
    the pair's drift energy both runs took together (the rest, ``1 - common_share``, is each
    run's own); 1 = identical updates, 0.5 = orthogonal, 0 = opposite.
    """
    result: dict[str, dict[str, list[float]]] = {}
    for key in keys:
        d = _dynamics([paths_a, paths_b], key, cross=True)
        norm_a, norm_b = np.sqrt(d["sq_norma"]), np.sqrt(d["sq_normb"])
        result[key] = {
            "drift_a": _ratio(np.sqrt(d["sq_drifta"]), np.full_like(norm_a, norm_a[0])).tolist(),
            "drift_b": _ratio(np.sqrt(d["sq_driftb"]), np.full_like(norm_b, norm_b[0])).tolist(),
            "update_a": np.sqrt(d["sq_updatea"]).tolist(),
            "update_b": np.sqrt(d["sq_updateb"]).tolist(),
            "cosine": _ratio(d["dot"], norm_a * norm_b).tolist(),
            "norm_a": norm_a.tolist(),
            "norm_b": norm_b.tolist(),
            "update_cosine": _ratio(
                d["dot_delta"], np.sqrt(d["sq_drifta"] * d["sq_driftb"])
            ).tolist(),
            "common_share": _ratio(
                d["sq_drifta"] + d["sq_driftb"] + 2 * d["dot_delta"],
                2 * (d["sq_drifta"] + d["sq_driftb"]),
            ).tolist(),
        }
    return result


def _as_2d(x: Any) -> np.ndarray:
    """Activations (n, ...) (numpy or torch) -> float64 (n, features)."""
    if hasattr(x, "detach"):  # torch tensor without importing torch here
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise SimilarityError(f"activations need shape (n, features...), got {x.shape}.")
    return x.reshape(x.shape[0], -1)


def _grams(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _as_2d(x), _as_2d(y)
    if xa.shape[0] != ya.shape[0]:
        raise SimilarityError(
            f"X has {xa.shape[0]} examples but Y has {ya.shape[0]}; pass the same inputs to both."
        )
    return xa @ xa.T, ya @ ya.T  # (n, n) each


def _center(k: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11^T / n."""
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def hsic_unbiased(k: np.ndarray, ll: np.ndarray) -> float:
    """Unbiased HSIC of Gram matrices (n, n), n >= 4 (Song et al. 2012, eq. 5)."""
    n = k.shape[0]
    if n < 4:
        raise SimilarityError(f"unbiased HSIC needs at least 4 examples, got {n}.")
    kt, lt = k.copy(), ll.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    trace = np.sum(kt * lt)  # tr(K~ L~) for symmetric L~
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = 2.0 * np.dot(kt.sum(0), lt.sum(1)) / (n - 2)  # 1^T K~ L~ 1
    return float((trace + sums - cross) / (n * (n - 3)))


def hsic_biased(k: np.ndarray, ll: np.ndarray) -> float:
    """Biased HSIC tr(K H L H) / (n - 1)^2 of Gram matrices (n, n)."""
    n = k.shape[0]
    return float(np.sum(_center(k) * _center(ll)) / (n - 1) ** 2)


def linear_cka(x: Any, y: Any, unbiased: bool = False) -> float:
    """Linear CKA between activations X (n, p) and Y (n, q) of the same n inputs.

    Extra dims are flattened, e.g. conv maps (n, C, h, w) -> (n, C*h*w). Biased: equals
    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on column-centred data. ``unbiased``
    uses the unbiased HSIC estimator (needs n >= 4). NaN when a representation is constant.
    """
    k, ll = _grams(x, y)
    hsic = hsic_unbiased if unbiased else hsic_biased
    kl, kk, lll = hsic(k, ll), hsic(k, k), hsic(ll, ll)
    den = np.sqrt(kk * lll) if kk > 0 and lll > 0 else 0.0
    return float(kl / den) if den > 0 else float("nan")


class MinibatchCKA:
    """Minibatch linear CKA (Nguyen et al. 2021): sums unbiased HSIC terms over batches.

    ``update(X, Y)`` for each batch (same inputs through both models, >= 4 examples), then
    ``value()`` = sum HSIC(K, L) / sqrt(sum HSIC(K, K) * sum HSIC(L, L)).
    """

    def __init__(self) -> None:
        self.kl = self.kk = self.ll = 0.0
        self.batches = 0

    def update(self, x_batch: Any, y_batch: Any) -> None:
        k, ll = _grams(x_batch, y_batch)
        self.kl += hsic_unbiased(k, ll)
        self.kk += hsic_unbiased(k, k)
        self.ll += hsic_unbiased(ll, ll)
        self.batches += 1

    def value(self) -> float:
        if self.batches == 0:
            raise SimilarityError("MinibatchCKA has no batches; call update() first.")
        den = np.sqrt(self.kk * self.ll) if self.kk > 0 and self.ll > 0 else 0.0
        return float(self.kl / den) if den > 0 else float("nan")


def region_shares(cams: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per image, the share of CAM energy inside each region: ``sum(cam*mask)/sum(cam)``, (N,).

    The energy-based pointing game (Wang et al. 2020). ``cams`` (N, H, W) non-negative; each mask
    (N, H, W) or (H, W) bool. NaN for images whose CAM sums to 0.
    """
    c = np.asarray(cams, dtype=np.float64)
    if c.ndim != 3:
        raise SimilarityError(f"cams must be (N, H, W), got {c.shape}.")
    if c.size and c.min() < 0:
        raise SimilarityError("cams must be non-negative; apply ReLU (Grad-CAM does) first.")
    total = c.sum(axis=(1, 2))  # (N,)
    keep = total > 0
    shares: dict[str, np.ndarray] = {}
    for name, mask in masks.items():
        m = np.asarray(mask, dtype=bool)
        if m.shape not in (c.shape, c.shape[1:]):
            raise SimilarityError(f"mask {name!r} has shape {m.shape}; expected {c.shape}.")
        inside = (c * m).sum(axis=(1, 2))
        shares[name] = np.where(keep, inside / np.where(keep, total, 1.0), np.nan)
    return shares


def localisation_shares(cams: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over images of :func:`region_shares`; images whose CAM sums to 0 are skipped, NaN
    when every image is."""
    out = {}
    for name, per_image in region_shares(cams, masks).items():
        kept = per_image[np.isfinite(per_image)]
        out[name] = float(kept.mean()) if kept.size else float("nan")
    return out

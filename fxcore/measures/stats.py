"""Per-weight statistics over epochs, streamed from per-epoch safetensors checkpoints.

Checkpoints are one safetensors file per epoch. :func:`mean_var` never holds all epochs in memory:
it walks the flattened tensor in blocks and, for each block, reads that block from every epoch
(a positional read straight into a reusable buffer, so neither a per-epoch copy of the tensor nor
memory-mapped file pages stay resident) and reduces it in float64 while it is still in cache.

Display helpers turn any weight tensor into a 2-D map (:func:`layout_2d`), shrink it to a pixel
budget (:func:`pool_to_budget`) or cut a full-resolution window from it (:func:`window`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxcore.core.errors import StatsError  # noqa: F401 - re-exported
from fxcore.store.checkpoints import DTYPES, CheckpointError, tensor_location

PathLike = str | os.PathLike[str]

_BLOCK_ELEMS = 32_768  # 128 KiB of float32 per epoch: E blocks + float64 work stay in L2/L3


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes lie inside a safetensors file."""

    path: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors tag, e.g. "F32"
    offset: int  # absolute byte offset of element 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def tensor_info(path: PathLike, key: str) -> TensorInfo:
    """Locate ``key`` in ``path`` with the store's validated header parser."""
    try:
        shape, dtype, offset = tensor_location(Path(path), key)
    except CheckpointError as exc:
        raise StatsError(str(exc)) from exc
    return TensorInfo(Path(path), shape, dtype, offset)


def epoch_infos(paths: Sequence[PathLike], key: str) -> list[TensorInfo]:
    """Locate ``key`` in every epoch file and check that all epochs agree on its shape."""
    if len(paths) == 0:
        raise StatsError("no checkpoint paths given; pass one safetensors file per epoch.")
    infos = [tensor_info(p, key) for p in paths]
    for info in infos[1:]:
        if info.shape != infos[0].shape:
            raise StatsError(
                f"{key!r} has shape {info.shape} in {info.path} but {infos[0].shape} in "
                f"{infos[0].path}; all epochs must come from the same model."
            )
    return infos


def read_block(fd: int, info: TensorInfo, start: int, stop: int, out: np.ndarray) -> None:
    """Read flat elements ``[start, stop)`` of the tensor from file descriptor ``fd`` into ``out``.

    ``out`` is a 1-D array of length ``stop - start``; values are cast into it. Positional reads
    (no seek) let threads share one descriptor per file.
    """
    raw = np.empty(stop - start, dtype=DTYPES[info.dtype][0])  # small: one block of one epoch
    view = memoryview(raw).cast("B")
    pos, got = info.offset + start * raw.itemsize, 0
    while got < len(view):  # reads may come back short
        n = _pread_into(fd, view[got:], pos + got)
        if not n:
            raise StatsError(f"{info.path} ended early; the checkpoint is truncated.")
        got += n
    if info.dtype == "BF16":  # bfloat16 is the top half of a float32
        out[:] = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        out[:] = raw


def _pread_into(fd: int, view: memoryview, pos: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], pos)
    data = os.pread(fd, len(view), pos)  # platforms without preadv: one extra copy
    view[: len(data)] = data
    return len(data)


def open_fds(infos: Sequence[TensorInfo], stack: ExitStack) -> list[int]:
    """Open each info's file read-only; ``stack`` closes them."""
    fds = []
    for info in infos:
        fd = os.open(info.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        stack.callback(os.close, fd)
        fds.append(fd)
    return fds


def block_ranges(numel: int, block: int) -> list[tuple[int, int]]:
    """Split ``range(numel)`` into consecutive ``(start, stop)`` ranges of ``block`` elements."""
    return [(s, min(s + block, numel)) for s in range(0, numel, block)]


def mean_var(
    paths: Sequence[PathLike], key: str, chunk_rows: int | None = None, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-weight mean and population variance (ddof=0) of ``key`` over the epoch files ``paths``.

    Streams block-major: extra memory is the two float32 outputs plus per worker one block of
    every epoch in float64. ``chunk_rows`` sets the block to that many rows of dim 0 (default:
    ~32k elements); ``workers`` threads split the blocks (default: up to 4 CPUs). Returns float32
    arrays of the tensor's shape.
    """
    infos = epoch_infos(paths, key)
    shape, numel, n_ep = infos[0].shape, infos[0].numel, len(infos)
    row = numel // shape[0] if shape and shape[0] else 1
    if chunk_rows is not None and chunk_rows < 1:
        raise StatsError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    # Auto blocks also stay below ~1/8 of the tensor over all epochs so small tensors stay cheap.
    block = chunk_rows * row if chunk_rows else min(_BLOCK_ELEMS, max(1024, numel // (8 * n_ep)))
    block = max(1, min(block, numel))
    ranges = block_ranges(numel, block)
    mean, var = np.empty(numel, np.float32), np.empty(numel, np.float32)
    if workers is None:  # threads cost more than they save on small tensors
        workers = min(4, os.cpu_count() or 1) if numel >= 4 * _BLOCK_ELEMS else 1
    n_work = max(1, min(workers, len(ranges)))

    def run(part: list[tuple[int, int]]) -> None:
        buf = np.empty((n_ep, block), np.float64)  # (E, block): one block of every epoch
        acc, sq = np.empty(block, np.float64), np.empty(block, np.float64)
        for s, e in part:
            n = e - s
            for fd, info, dst in zip(fds, infos, buf):
                read_block(fd, info, s, e, dst[:n])
            b = buf[:, :n]
            np.sum(b, axis=0, out=acc[:n])
            acc[:n] /= n_ep
            b -= acc[:n]  # two-pass: deviations from the block's exact mean
            np.einsum("ej,ej->j", b, b, out=sq[:n])
            sq[:n] /= n_ep
            mean[s:e], var[s:e] = acc[:n], sq[:n]

    with ExitStack() as stack:
        fds = open_fds(infos, stack)
        if n_work == 1:
            run(ranges)
        else:  # contiguous stripes: each worker walks its own part of the files sequentially
            step = math.ceil(len(ranges) / n_work)
            with ThreadPoolExecutor(n_work) as pool:
                list(pool.map(run, [ranges[i : i + step] for i in range(0, len(ranges), step)]))
    return mean.reshape(shape), var.reshape(shape)


def load_tensor(path: PathLike, key: str) -> np.ndarray:
    """Read one whole tensor from a safetensors file as float64 (validated, no pickle)."""
    info = tensor_info(path, key)
    out = np.empty(info.numel, np.float64)
    with ExitStack() as stack:
        read_block(open_fds([info], stack)[0], info, 0, info.numel, out)
    return out.reshape(info.shape)


def layout_2d(t: np.ndarray) -> np.ndarray:
    """Arrange a weight tensor as a 2-D map for display.

    - 0-D -> (1, 1); 1-D ``(n,)`` -> ``(1, n)``; 2-D ``(out, in)`` unchanged (row = output unit).
    - 3-D ``(out, in, k)`` -> ``(out, in * k)``.
    - 4-D conv ``(out, in, kh, kw)`` -> ``(out * kh, in * kw)``: block ``(o, i)`` is the
      ``kh x kw`` kernel from input channel ``i`` to output channel ``o``; kernel row ``r`` is map
      row ``o * kh + r`` and kernel column ``c`` is map column ``i * kw + c``.
    """
    t = np.asarray(t)
    if t.ndim <= 1:
        return t.reshape(1, -1)
    if t.ndim == 2:
        return t
    if t.ndim == 3:
        return t.reshape(t.shape[0], -1)
    if t.ndim == 4:
        o, i, kh, kw = t.shape
        return t.transpose(0, 2, 1, 3).reshape(o * kh, i * kw)
    raise StatsError(f"cannot lay out a {t.ndim}-D tensor {t.shape}; expected at most 4 dims.")


def layout_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Shape of :func:`layout_2d` of a tensor of ``shape``, without the tensor."""
    if len(shape) <= 1:
        return 1, math.prod(shape)
    if len(shape) == 4:
        return shape[0] * shape[2], shape[1] * shape[3]
    return shape[0], math.prod(shape[1:])


def pool_to_budget(
    m2d: np.ndarray, budget: tuple[int, int] = (512, 512), mode: str = "mean"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Block-pool a 2-D map until it fits ``budget`` (rows, cols).

    The block per axis is the smallest integer ``b`` with ``ceil(size / b) <= budget``. Ragged
    edges are padded with NaN and ignored. ``mode="mean"`` takes the NaN-mean of each block;
    ``"maxabs"`` takes the element of largest magnitude, keeping its sign (so a single strong
    weight stays visible). All-NaN blocks give NaN. Returns ``(pooled, (block_rows, block_cols))``;
    the map itself with ``(1, 1)`` when it already fits.
    """
    m = np.asarray(m2d)
    if m.ndim != 2:
        raise StatsError(f"pool_to_budget needs a 2-D map, got shape {m.shape}; use layout_2d.")
    if mode not in ("mean", "maxabs"):
        raise StatsError(f"unknown pooling mode {mode!r}; use 'mean' or 'maxabs'.")
    if min(budget) < 1:
        raise StatsError(f"budget must be positive, got {budget}.")
    h, w = m.shape
    br, bc = max(1, math.ceil(h / budget[0])), max(1, math.ceil(w / budget[1]))
    if br == 1 and bc == 1:
        return m, (1, 1)
    hb, wb = math.ceil(h / br), math.ceil(w / bc)
    dtype = m.dtype if m.dtype.kind == "f" else np.float32
    if h % br == 0 and w % bc == 0:
        # Fast path (VGG's big layers divide evenly): reduce a reshaped view, no padded copy.
        # Reduce the block rows first: (hb, br, w) -> (hb, w) adds whole contiguous rows, then
        # the small (hb, wb, bc) result along its last axis. NaN propagates through sum, max and
        # min, so a NaN in the input shows up in the small result: then take the NaN-aware path.
        v = m.astype(dtype, copy=False).reshape(hb, br, w)
        if mode == "mean":
            acc = np.promote_types(dtype, np.float32)  # float16 sums would overflow
            rows = v.sum(axis=1, dtype=acc).reshape(hb, wb, bc)
            out = (rows.sum(axis=2) / (br * bc)).astype(dtype)
        else:
            hi = v.max(axis=1).reshape(hb, wb, bc).max(axis=2)  # (hb, wb)
            lo = v.min(axis=1).reshape(hb, wb, bc).min(axis=2)
            out = np.where(hi >= -lo, hi, lo)
        if not np.isnan(out).any():
            return out, (br, bc)
    padded = np.full((hb * br, wb * bc), np.nan, dtype)
    padded[:h, :w] = m
    blocks = padded.reshape(hb, br, wb, bc).transpose(0, 2, 1, 3).reshape(hb, wb, br * bc)
    if mode == "mean":
        with warnings.catch_warnings():  # all-NaN blocks -> NaN is the intended result
            warnings.simplefilter("ignore", RuntimeWarning)
            acc = np.promote_types(dtype, np.float32)
            return np.nanmean(blocks, axis=-1, dtype=acc).astype(dtype), (br, bc)
    mag = np.where(np.isnan(blocks), -np.inf, np.abs(blocks))
    idx = np.argmax(mag, axis=-1)[..., None]  # all-NaN block -> index 0 -> NaN
    return np.take_along_axis(blocks, idx, axis=-1)[..., 0], (br, bc)


def window(
    m2d: np.ndarray, row0: int, col0: int, height: int = 256, width: int = 256
) -> tuple[np.ndarray, tuple[int, int]]:
    """Full-resolution ``height x width`` view of ``m2d`` starting near ``(row0, col0)``.

    The start is clamped so the window lies inside the map (smaller maps give the whole map).
    Returns ``(view, (r0, c0))`` with the start actually used.
    """
    m = np.asarray(m2d)
    if m.ndim != 2:
        raise StatsError(f"window needs a 2-D map, got shape {m.shape}; use layout_2d.")
    r0 = int(min(max(row0, 0), max(m.shape[0] - height, 0)))
    c0 = int(min(max(col0, 0), max(m.shape[1] - width, 0)))
    return m[r0 : r0 + height, c0 : c0 + width], (r0, c0)


def mnist_unit_tiles(w: np.ndarray) -> np.ndarray:
    """First-layer weights ``(hidden, 784)`` of an MNIST MLP -> one 28x28 image per hidden unit."""
    w = np.asarray(w)
    side = math.isqrt(w.shape[-1]) if w.ndim == 2 else 0
    if w.ndim != 2 or side * side != w.shape[1]:
        raise StatsError(f"expected (hidden, 784) input weights, got {w.shape}.")
    return w.reshape(w.shape[0], side, side)


def tile_grid(
    tiles: np.ndarray, cols: int | None = None, pad: int = 1, normalize: bool = False
) -> np.ndarray:
    """Arrange ``(N, h, w)`` tiles row-major in a grid with ``pad`` NaN pixels between tiles.

    ``cols`` defaults to ``ceil(sqrt(N))``; unused grid cells are NaN. ``normalize`` divides each
    tile by its largest magnitude so every unit uses the full colour range.
    """
    t = np.asarray(tiles)
    t = t if t.dtype == np.float64 else t.astype(np.float32)
    if t.ndim != 3 or t.shape[0] == 0:
        raise StatsError(f"tile_grid needs (N, h, w) tiles with N >= 1, got {t.shape}.")
    n, h, w = t.shape
    if normalize:
        scale = np.abs(t).reshape(n, -1).max(axis=1)
        t = t / np.where(scale > 0, scale, 1)[:, None, None]
    cols = max(1, min(cols or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    cells = np.full((rows * cols, h + pad, w + pad), np.nan, t.dtype)
    cells[:n, :h, :w] = t
    grid = cells.reshape(rows, cols, h + pad, w + pad).transpose(0, 2, 1, 3)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad))
    return grid[: grid.shape[0] - pad, : grid.shape[1] - pad]


def tile_index(
    grid_shape: tuple[int, int], n: int, side: int, pad: int = 1, cols: int | None = None
) -> np.ndarray:
    """Tile number under each pixel of a :func:`tile_grid` of ``n`` square tiles (-1 on padding)."""
    cols = max(1, min(cols or math.ceil(math.sqrt(n)), n))
    step = side + pad
    rr, cc = np.indices(grid_shape)
    unit = (rr // step) * cols + cc // step
    inside = (rr % step < side) & (cc % step < side) & (unit < n)
    return np.where(inside, unit, -1).astype(np.int16 if n < 2**15 else np.int32)

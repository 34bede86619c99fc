"""fxcore.measures.stats: streamed mean/var against NumPy references, display layouts against loops."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from references import mean_var_reference
from safetensors.torch import save_file

from fxcore.measures import stats
from fxcore.measures.stats import StatsError

KEY = "features.0.weight"


def write_epochs(
    tmp: Path, arrays: list[np.ndarray], key: str = KEY, dtype: torch.dtype = torch.float32
) -> list[Path]:
    """One safetensors file per epoch, as the trainer writes them (plus a distractor tensor)."""
    paths = []
    for e, a in enumerate(arrays):
        p = tmp / f"epoch_{e:03d}.safetensors"
        tensors = {key: torch.from_numpy(a).to(dtype), "other.bias": torch.ones(3)}
        save_file(tensors, str(p), metadata={"fxcore": json.dumps({"epoch": e})})
        paths.append(p)
    return paths


def random_epochs(shape: tuple[int, ...], n_ep: int = 11, seed: int = 0) -> list[np.ndarray]:
    """A random walk, like weights over training (offset so means are not all near 0)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32) * 0.05 + 0.01
    out = []
    for _ in range(n_ep):
        out.append(w.copy())
        w = w + rng.standard_normal(shape).astype(np.float32) * 0.003
    return out


def numpy_ref(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    st = np.stack(arrays).astype(np.float64)
    return st.mean(0), st.var(0)


@pytest.mark.parametrize(
    ("shape", "chunk_rows"),
    [
        ((37,), None),
        ((37,), 5),
        ((13, 7), None),
        ((13, 7), 4),
        ((6, 3, 5, 5), None),
        ((6, 3, 5, 5), 4),
        ((1, 5003), None),
        ((101, 17), 3),
        ((64, 3, 3, 3), 1),
    ],
)
def test_mean_var_matches_numpy(tmp_path: Path, shape: tuple[int, ...], chunk_rows) -> None:
    arrays = random_epochs(shape)
    paths = write_epochs(tmp_path, arrays)
    mean, var = stats.mean_var(paths, KEY, chunk_rows=chunk_rows)
    ref_mean, ref_var = numpy_ref(arrays)
    assert mean.shape == var.shape == shape and mean.dtype == var.dtype == np.float32
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
    np.testing.assert_allclose(var, ref_var, rtol=1e-5)
    ref2 = mean_var_reference(paths, KEY)
    np.testing.assert_allclose(mean, ref2[0], rtol=1e-5)
    np.testing.assert_allclose(var, ref2[1], rtol=1e-5)


def test_mean_var_threads_and_ragged_blocks(tmp_path: Path) -> None:
    arrays = random_epochs((300, 501), n_ep=5)  # > 4 blocks: the threaded path runs
    paths = write_epochs(tmp_path, arrays)
    ref_mean, ref_var = numpy_ref(arrays)
    for workers in (1, 2, 3):
        mean, var = stats.mean_var(paths, KEY, workers=workers)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)
        np.testing.assert_allclose(var, ref_var, rtol=1e-5)


def test_mean_var_nearly_constant_weights_are_exact(tmp_path: Path) -> None:
    # Tiny changes on a large offset: naive sum-of-squares in float32 would lose them entirely.
    base = np.full((50,), 3.0, np.float32)
    arrays = [base + np.float32(i * 2.0**-20) for i in range(11)]
    mean, var = stats.mean_var(write_epochs(tmp_path, arrays), KEY)
    ref_mean, ref_var = numpy_ref(arrays)
    np.testing.assert_allclose(var, ref_var, rtol=1e-6)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-7)


def test_mean_var_single_epoch_and_bf16(tmp_path: Path) -> None:
    arrays = random_epochs((8, 9), n_ep=3)
    paths = write_epochs(tmp_path, arrays, dtype=torch.bfloat16)
    as_bf16 = [torch.from_numpy(a).to(torch.bfloat16).float().numpy() for a in arrays]
    mean, var = stats.mean_var(paths, KEY)
    np.testing.assert_allclose(mean, numpy_ref(as_bf16)[0], rtol=1e-6)
    np.testing.assert_allclose(var, numpy_ref(as_bf16)[1], rtol=1e-5)
    m1, v1 = stats.mean_var(paths[:1], KEY)
    np.testing.assert_array_equal(m1, as_bf16[0])
    assert not v1.any()


def test_mean_var_peak_memory_is_a_few_tensor_sizes(tmp_path: Path) -> None:
    arrays = random_epochs((1024, 1024), n_ep=11)
    paths = write_epochs(tmp_path, arrays)
    tensor_bytes = arrays[0].nbytes
    del arrays
    tracemalloc.start()  # numpy reports its data buffers to tracemalloc
    try:
        base = tracemalloc.get_traced_memory()[0]
        mean, var = stats.mean_var(paths, KEY)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert mean.nbytes + var.nbytes == 2 * tensor_bytes  # the outputs are part of the peak
    assert peak < 5 * tensor_bytes, f"peak {peak / tensor_bytes:.2f} tensor sizes"


def test_mean_var_errors_say_what_is_wrong(tmp_path: Path) -> None:
    paths = write_epochs(tmp_path, random_epochs((4, 4), n_ep=2))
    with pytest.raises(StatsError, match="not in"):
        stats.mean_var(paths, "nope.weight")
    with pytest.raises(StatsError, match="no checkpoint"):
        stats.mean_var([], KEY)
    other = tmp_path / "other"
    other.mkdir()
    odd = write_epochs(other, random_epochs((4, 5), n_ep=1))
    with pytest.raises(StatsError, match="same model"):
        stats.mean_var([paths[0], odd[0]], KEY)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(StatsError, match="not a safetensors"):
        stats.mean_var([bad], KEY)
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(paths[0].read_bytes()[:-20])  # cuts into KEY
    with pytest.raises(StatsError, match="corrupt"):
        stats.mean_var([truncated], KEY)


def layout_loop(t: np.ndarray) -> np.ndarray:
    o, i, kh, kw = t.shape
    m = np.empty((o * kh, i * kw), t.dtype)
    for a in range(o):
        for b in range(i):
            for r in range(kh):
                for c in range(kw):
                    m[a * kh + r, b * kw + c] = t[a, b, r, c]
    return m


def test_layout_2d() -> None:
    rng = np.random.default_rng(1)
    conv = rng.standard_normal((5, 4, 3, 2))
    np.testing.assert_array_equal(stats.layout_2d(conv), layout_loop(conv))
    assert stats.layout_2d(np.arange(7)).shape == (1, 7)
    lin = rng.standard_normal((6, 9))
    np.testing.assert_array_equal(stats.layout_2d(lin), lin)
    assert stats.layout_2d(np.ones((2, 3, 4))).shape == (2, 12)
    with pytest.raises(StatsError):
        stats.layout_2d(np.ones((1, 1, 1, 1, 1)))


def pool_loop(m: np.ndarray, br: int, bc: int, mode: str) -> np.ndarray:
    hb, wb = math.ceil(m.shape[0] / br), math.ceil(m.shape[1] / bc)
    out = np.full((hb, wb), np.nan)
    for i in range(hb):
        for j in range(wb):
            vals = m[i * br : (i + 1) * br, j * bc : (j + 1) * bc].ravel()
            vals = vals[~np.isnan(vals)]
            if vals.size == 0:
                continue
            out[i, j] = vals.mean() if mode == "mean" else vals[np.argmax(np.abs(vals))]
    return out


@pytest.mark.parametrize("mode", ["mean", "maxabs"])
def test_pool_to_budget_matches_loop(mode: str) -> None:
    rng = np.random.default_rng(2)
    m = rng.standard_normal((103, 57))
    m[:7, :9] = np.nan  # a whole NaN block (e.g. tile padding) stays NaN
    pooled, (br, bc) = stats.pool_to_budget(m, budget=(10, 20), mode=mode)
    assert (br, bc) == (11, 3)  # smallest blocks: ceil(103/11)=10 <= 10, ceil(57/3)=19 <= 20
    assert pooled.shape == (10, 19)
    np.testing.assert_allclose(pooled, pool_loop(m, br, bc, mode), equal_nan=True)
    same, block = stats.pool_to_budget(m, budget=(200, 200), mode=mode)
    assert block == (1, 1) and same is m
    with pytest.raises(StatsError):
        stats.pool_to_budget(m, mode="median")


def test_window_is_clamped() -> None:
    m = np.arange(100 * 80).reshape(100, 80)
    w, (r0, c0) = stats.window(m, 90, -5, height=20, width=30)
    assert (r0, c0) == (80, 0) and w.shape == (20, 30)
    np.testing.assert_array_equal(w, m[80:100, 0:30])
    w, start = stats.window(m, 3, 4, height=500, width=500)
    assert start == (0, 0) and w.shape == m.shape


def test_mnist_tiles_and_grid() -> None:
    w = np.arange(5 * 784, dtype=np.float32).reshape(5, 784)
    tiles = stats.mnist_unit_tiles(w)
    assert tiles.shape == (5, 28, 28)
    np.testing.assert_array_equal(tiles[2, 1], w[2, 28:56])
    with pytest.raises(StatsError):
        stats.mnist_unit_tiles(np.ones((5, 100 + 1)))
    small = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    grid = stats.tile_grid(small, cols=2, pad=1)
    assert grid.shape == (3 * 2 + 2, 2 * 3 + 1)
    for k in range(5):  # loop reference: tile k at row k // 2, col k % 2
        r, c = (k // 2) * 3, (k % 2) * 4
        np.testing.assert_array_equal(grid[r : r + 2, c : c + 3], small[k])
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()  # padding
    assert np.isnan(grid[6:, 4:]).all()  # the unused sixth cell
    norm = stats.tile_grid(small - 10, normalize=True)
    assert np.nanmax(np.abs(norm)) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["mean", "maxabs"])
def test_pool_fast_path_equals_padded_path(mode: str) -> None:
    """Evenly dividing, NaN-free maps take a reshape fast path; it must equal the general path."""
    m = np.random.default_rng(5).standard_normal((64, 98)).astype(np.float32)
    fast, block = stats.pool_to_budget(m, (8, 14), mode)
    assert block == (8, 7)
    with_nan = m.copy()
    with_nan[0, 0] = np.nan  # forces the NaN-padded path; block (0, 0) then differs
    slow, _ = stats.pool_to_budget(with_nan, (8, 14), mode)
    np.testing.assert_allclose(fast.ravel()[1:], slow.ravel()[1:], rtol=1e-5, atol=1e-6)
    block00 = with_nan[:8, :7][~np.isnan(with_nan[:8, :7])]  # the NaN is ignored, not spread
    want = block00.mean() if mode == "mean" else block00[np.abs(block00).argmax()]
    assert slow[0, 0] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("nan", [False, True])
def test_pool_mean_of_float16_does_not_overflow(nan: bool) -> None:
    m = np.full((1024, 1024), 100.0, np.float16)  # a 16x16 block sums to 25,600 > float16 max
    if nan:
        m[0, 0] = np.nan
    pooled, block = stats.pool_to_budget(m, (64, 64), "mean")
    assert block == (16, 16) and pooled.dtype == np.float16
    np.testing.assert_array_equal(pooled, 100.0)


def test_layout_shape_and_tile_index_agree_with_the_arrays() -> None:
    for shape in [(7,), (5, 4, 3, 2), (6, 9), (2, 3, 4), ()]:
        assert stats.layout_shape(shape) == stats.layout_2d(np.zeros(shape)).shape, shape
    n, side = 7, 3
    tiles = np.stack([np.full((side, side), float(k)) for k in range(n)])
    grid = stats.tile_grid(tiles, pad=1)
    index = stats.tile_index(grid.shape, n, side=side, pad=1)
    np.testing.assert_array_equal(np.where(index >= 0, index, np.nan), grid)

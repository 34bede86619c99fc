"""Weight statistics: per-weight mean and variance over an epoch range, L1 vs L2 vs difference."""

from __future__ import annotations

import math

import cache
import numpy as np
import streamlit as st
import ui

from fxcore.measures.stats import (
    layout_2d,
    layout_shape,
    mnist_unit_tiles,
    tile_grid,
    tile_index,
    window,
)
from fxcore.store.runs import Run

WINDOW = 256


def layout_note(shape: tuple[int, ...]) -> str:
    if len(shape) == 4:
        o, i, kh, kw = shape
        return (
            f"conv kernel laid out as a {o * kh}×{i * kw} map: row = out-channel×{kh} + kernel "
            f"row, column = in-channel×{kw} + kernel column"
        )
    if len(shape) == 2:
        return f"row = output unit (0–{shape[0] - 1}), column = input (0–{shape[1] - 1})"
    if len(shape) == 1:
        return "one row of values"
    return f"shape {shape}"


def axis_names(shape: tuple[int, ...]) -> tuple[str, str]:
    """(x, y) axis titles of a weight map laid out by :func:`fxcore.measures.stats.layout_2d`."""
    if len(shape) == 4:
        return "in-channel × kernel column", "out-channel × kernel row"
    if len(shape) == 2:
        return "input", "output unit"
    return "index", ""


def map_rows(runs: list[Run], wm, robust: bool, shape: tuple[int, ...]) -> None:
    names = [r.name for r in runs]
    labels = [ui.run_label(i, r) for i, r in enumerate(runs)]
    for stat, maps in (("mean", wm.mean), ("variance", wm.var)):
        own = [maps[n] for n in names]
        lo, hi = ui.symmetric(own, robust) if stat == "mean" else ui.positive(own, robust)
        scale = "RdBu_r" if stat == "mean" else "Viridis"
        cols = st.columns(len(names) + (1 if "difference" in maps else 0))
        for i, (label, m) in enumerate(zip(labels, own)):
            fig = ui.heatmap_figure(
                m,
                title=f"{label} — {stat}",
                zmin=lo,
                zmax=hi,
                colorscale=scale,
                block=wm.block,
                value_name=f"{stat} weight" if stat == "mean" else "variance (weight²)",
                axis_titles=axis_names(shape),
            )
            cols[i].plotly_chart(fig, key=f"ws_{stat}_{i}")
        if "difference" in maps:
            d = maps["difference"]
            dlo, dhi = ui.symmetric([d], robust)
            fig = ui.heatmap_figure(
                d,
                title=f"L1 − L2 — {stat}",
                zmin=dlo,
                zmax=dhi,
                colorscale="RdBu_r",
                block=wm.block,
                value_name=f"Δ {stat}",
                axis_titles=axis_names(shape),
            )
            cols[-1].plotly_chart(fig, key=f"ws_{stat}_diff")


def zoom(runs: list[Run], key: str, lo: int, hi: int, shape: tuple[int, ...]) -> None:
    rows, cols_ = layout_shape(shape)
    c1, c2, c3 = st.columns(3)
    r0 = int(c1.number_input("First row", 0, max(0, rows - 1), 0, step=64, key="ws_row0"))
    c0 = int(c2.number_input("First column", 0, max(0, cols_ - 1), 0, step=64, key="ws_col0"))
    stat = c3.radio("Statistic", ("mean", "variance"), horizontal=True, key="ws_zoom_stat")
    full = [layout_2d(cache.mean_var(r, key, lo, hi)[0 if stat == "mean" else 1]) for r in runs]
    views = [window(m, r0, c0, WINDOW, WINDOW) for m in full]
    (wr, wc) = views[0][1]
    h, w = views[0][0].shape
    st.caption(
        f"Rows {wr}–{wr + h - 1}, columns {wc}–{wc + w - 1} at full resolution "
        f"(one cell = one weight)."
    )
    own = [v for v, _ in views]
    lo_, hi_ = ui.symmetric(own) if stat == "mean" else ui.positive(own)
    scale = "RdBu_r" if stat == "mean" else "Viridis"
    diff = len(own) > 1
    cols = st.columns(len(own) + (1 if diff else 0))
    for i, (run, v) in enumerate(zip(runs, own)):
        fig = ui.heatmap_figure(
            v,
            title=ui.run_label(i, run),
            zmin=lo_,
            zmax=hi_,
            colorscale=scale,
            origin=(wr, wc),
            value_name=stat,
            axis_titles=axis_names(shape),
        )
        cols[i].plotly_chart(fig, key=f"ws_zoom_{i}")
    if diff:
        d = own[0].astype(np.float32) - own[1]
        dlo, dhi = ui.symmetric([d])
        fig = ui.heatmap_figure(
            d,
            title="L1 − L2",
            zmin=dlo,
            zmax=dhi,
            origin=(wr, wc),
            value_name=f"Δ {stat}",
            axis_titles=axis_names(shape),
        )
        cols[-1].plotly_chart(fig, key="ws_zoom_diff")


def unit_tiles(runs: list[Run], key: str, lo: int, hi: int, shape: tuple[int, ...]) -> None:
    """First-layer weights (hidden, 784) as one 28x28 image per hidden unit (seed Figs 3.3-3.10)."""
    st.subheader("First-layer units as 28×28 images")
    epochs = f"epoch {lo}" if lo == hi else f"epochs {lo}–{hi}"
    st.caption(
        f"Each tile is the {shape[1]} input weights of one of the {shape[0]} hidden units, "
        f"laid out like the input digit; {epochs}. Tiles are in unit order, row-major."
    )
    c1, c2 = st.columns(2)
    per_unit = c1.toggle("Normalise each unit to its own range", value=False, key="ws_tile_norm")
    stat = c2.radio("Statistic", ("mean", "variance"), horizontal=True, key="ws_tile_stat")
    cols = st.columns(len(runs))
    for i, run in enumerate(runs):
        m = cache.mean_var(run, key, lo, hi)[0 if stat == "mean" else 1]
        grid = tile_grid(mnist_unit_tiles(m), normalize=per_unit)
        lo_, hi_ = ui.symmetric([grid]) if stat == "mean" else ui.positive([grid])
        fig = ui.heatmap_figure(
            grid,
            title=f"{ui.run_label(i, run)} — {stat}",
            zmin=lo_,
            zmax=hi_,
            colorscale="RdBu_r" if stat == "mean" else "Viridis",
            square=True,
            height=640,
            value_name=stat,
            axis_titles=("28 pixels per tile, units left to right", "28 pixels per tile"),
        )
        fig.update_traces(
            customdata=tile_index(grid.shape, shape[0], side=28),
            hovertemplate=f"unit %{{customdata}}<br>{stat} %{{z:.4g}}<extra></extra>",
        )
        cols[i].plotly_chart(fig, key=f"ws_tiles_{i}")


def main() -> None:
    st.title("Weight statistics")
    st.caption(
        "Per-weight mean and population variance over the chosen epochs, for each model "
        "and their difference. One colour scale per row: L1 and L2 share it; the "
        "difference is centred on zero."
    )
    exp = ui.current_experiment()
    runs = ui.pick_runs(exp, "ws")
    epochs = ui.epochs_or_stop(runs)
    keys = runs[0].weight_keys()
    shapes = runs[0].shapes
    default = next((k for k in keys if k.endswith("weight") and len(shapes[k]) >= 2), keys[0])
    c1, c2 = st.columns([2, 3])
    key = c1.selectbox(
        "Weight tensor",
        keys,
        index=keys.index(default),
        key="ws_key",
        format_func=lambda k: f"{k}  {tuple(shapes[k])}",
    )
    with c2:
        lo, hi = ui.epoch_range(epochs, "ws_range")
    o1, o2 = st.columns(2)
    mode = o1.radio(
        "Pooling of large tensors",
        ("mean", "maxabs"),
        horizontal=True,
        key="ws_mode",
        help="maxabs keeps the largest-magnitude weight of each block "
        "(with its sign), so a single strong weight stays "
        "visible.",
    )
    robust = o2.toggle("Clip colour scale at the 99.5th percentile", value=False, key="ws_robust")
    shape = tuple(shapes[key])
    with ui.guard("Weight maps"), st.spinner("Reading the checkpoints…"):
        wm = cache.weight_maps(runs, key, lo, hi, mode)
        n_ep = len(wm.epochs)
        pooled = wm.block != (1, 1)
        block = (
            f"pooled to fit 512×512: each cell is the {mode} of a {wm.block[0]}×{wm.block[1]} "
            "block of weights"
            if pooled
            else "full resolution: one cell per weight"
        )
        st.caption(
            f"**{key}** {shape}: {layout_note(shape)}; {n_ep} epoch(s) {wm.epochs[0]}–"
            f"{wm.epochs[-1]}; {block}. Hover a cell for its row, column and value."
        )
        map_rows(runs, wm, robust, shape)
    if len(shape) >= 1 and math.prod(shape) > 1:
        with st.expander("Zoom: a window at full resolution", expanded=pooled), ui.guard("Zoom"):
            zoom(runs, key, lo, hi, shape)
    if len(shape) == 2 and shape[1] == 784:
        with ui.guard("Unit tiles"):
            unit_tiles(runs, key, lo, hi, shape)


main()

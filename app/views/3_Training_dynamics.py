"""Training dynamics: how far each layer moves, how alike the two models stay, where they look."""

from __future__ import annotations

import cache
import charts
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import trust_view  # control run, intervals, layers and methods, probes
import ui

from fxcore.data.base import REGIONS
from fxcore.data.inputs import capabilities
from fxcore.store.runs import Experiment, Run

MEASURES = {
    "drift": ("drift_a", "drift_b", "Relative drift from init ‖Wₜ − W₀‖ / ‖W₀‖"),
    "update": ("update_a", "update_b", "Update size ‖Wₜ − Wₜ₋₁‖"),
}
UNITS = {"drift": "drift (ratio to ‖W₀‖)", "update": "‖Wₜ − Wₜ₋₁‖ (Frobenius, weight units)"}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def default_layers(layers: list[str], n: int = 4) -> list[str]:
    """First, last and evenly spaced layers in between."""
    if len(layers) <= n:
        return list(layers)
    idx = np.linspace(0, len(layers) - 1, n).round().astype(int)
    return [layers[i] for i in dict.fromkeys(idx.tolist())]


def matrix(layers: list[str], table: dict[str, dict[str, list[float]]], field: str) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in table[k][field]] for k in layers], float)


def weight_dynamics(exp: Experiment, runs: list[Run]) -> None:
    st.subheader("Weight dynamics")
    with st.spinner("Reading every epoch's weights…"):
        dyn = cache.dynamics(exp, runs)
    layers, epochs, table = (
        runs[0].model_order(dyn["layers"]),
        list(dyn["epochs"]),
        dyn["layers"],
    )
    if not layers:
        st.info("No weight matrix to measure in these runs.")
        return
    pair = len(runs) > 1 and runs[0].name != runs[1].name
    measure = st.radio(
        "Measure",
        list(MEASURES),
        horizontal=True,
        key="td_measure",
        format_func=lambda m: MEASURES[m][2],
    )
    fa, fb, title = MEASURES[measure]
    scale = st.radio(
        "Colour scale",
        list(charts.ROW_SCALES),
        horizontal=True,
        key="td_scale",
        format_func=lambda k: charts.ROW_SCALES[k],
        help="Each layer to its own maximum shows when every layer moves, even where one layer "
        "(often the last) moves far more than the rest; hover a cell for its value.",
    )
    mats = [matrix(layers, table, fa)] + ([matrix(layers, table, fb)] if pair else [])
    shown = [charts.row_scaled(m, scale) for m in mats]
    if scale == "linear":  # one range for L1 and L2
        hi = max(z[2] for z in shown)
        shown = [(z, lo, hi, label) for z, lo, _, label in shown]
    elif scale == "log":
        finite = np.concatenate([z[np.isfinite(z)] for z, *_ in shown])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        shown = [(z, lo, hi, label) for z, _, _, label in shown]
    cols = st.columns(len(mats) + (1 if pair else 0))
    for i, (m, (z, lo, hi, label)) in enumerate(zip(mats, shown)):
        fig = ui.layer_epoch_figure(
            layers,
            epochs,
            z,
            title=f"{ui.run_label(i, runs[i])}: {measure}",
            zmin=lo,
            zmax=hi,
            value_name=UNITS[measure],
            raw=m,
        )
        fig.update_traces(colorbar_title_text=label or UNITS[measure], colorbar_title_side="right")
        cols[i].plotly_chart(fig, key=f"td_heat_{i}")
    if pair:
        cos = matrix(layers, table, "cosine")
        fig = ui.layer_epoch_figure(
            layers,
            epochs,
            cos,
            title="Cosine similarity L1 vs L2",
            colorscale="Cividis",
            value_name="cosine",
        )
        fig.update_traces(colorbar_title_text="cosine", colorbar_title_side="right")
        cols[-1].plotly_chart(fig, key="td_heat_cos")
    chosen = st.multiselect(
        "Layers for the line charts", layers, default=default_layers(layers), key="td_layers"
    )
    if not chosen:
        return
    c1, c2 = st.columns(2)
    series, dashes, colours = {}, {}, {}
    for i, f in enumerate([fa, fb] if pair else [fa]):
        for j, k in enumerate(chosen):  # one colour per layer; L1 solid, L2 dashed
            name = f"L{i + 1} {k}"
            series[name], dashes[name] = table[k][f], "solid" if i == 0 else "dash"
            colours[name] = COLOURS[j % len(COLOURS)]
    fig = ui.line_figure(
        epochs, series, title=title, ylabel=UNITS[measure], dashes=dashes, colours=colours
    )
    if scale == "log":  # the same reading as the heatmaps
        fig.update_yaxes(type="log")
    c1.plotly_chart(fig, key="td_line")
    if pair:
        fig = ui.line_figure(
            epochs,
            {k: table[k]["cosine"] for k in chosen},
            title="Cosine similarity of L1 and L2 weights",
            ylabel="cosine",
        )
        c2.plotly_chart(fig, key="td_line_cos")


def cka_section(exp: Experiment, runs: list[Run]) -> None:
    st.subheader("Representation similarity (linear CKA)")
    if len(runs) < 2 or runs[0].name == runs[1].name:
        st.info("CKA compares two different models: this experiment has one run.")
        return
    if not capabilities(exp.info).probe_images:
        st.info("Imported runs carry no dataset, so there are no probe images for CKA.")
        return
    # 128 = `fxcore compare`'s default, so results that command cached on disk load at once.
    n_probe = int(
        st.number_input("Probe images (validation split)", 16, 4096, 128, step=16, key="td_cka_n")
    )
    with st.spinner(
        f"Computing CKA on {n_probe} images for every epoch (cached on disk after the first time)…"
    ):
        res = cache.cka(exp, runs, n_probe)
    layers, epochs = runs[0].model_order(res["layers"]), list(res["epochs"])
    m = np.array([res["layers"][k] for k in layers], float)
    st.caption(
        f"Minibatch linear CKA between L1's and L2's activations on {res['n_probe']} "
        "validation images; 1 = the same representation up to rotation and scale. "
        + charts.UNBIASED_CKA_NOTE
    )
    c1, c2 = st.columns(2)
    fig = ui.layer_epoch_figure(
        layers, epochs, m, title="CKA(L1, L2)", zmin=0.0, zmax=1.0, value_name="CKA"
    )
    fig.update_traces(colorbar_title_text="CKA (0–1)", colorbar_title_side="right")
    c1.plotly_chart(fig, key="td_cka_heat")
    chosen = default_layers(layers, 5)
    fig = ui.line_figure(
        epochs, {k: res["layers"][k] for k in chosen}, title="CKA per layer", ylabel="CKA"
    )
    c2.plotly_chart(fig, key="td_cka_line")


def localisation_section(exp: Experiment, runs: list[Run]) -> None:
    st.subheader("Attention localisation (Grad-CAM share per face region)")
    if not capabilities(exp.info).face_regions:
        st.info("Localisation needs face images with region masks (CelebA or SynthFaces).")
        return
    n_probe = int(st.number_input("Probe images", 8, 2048, 128, step=8, key="td_loc_n"))
    with st.spinner(f"Grad-CAM on {n_probe} images for every epoch and model…"):
        res = cache.localisation(exp, runs, n_probe)
    if not res.get("runs"):
        st.info(res.get("note", "No region masks for this dataset."))
        return
    regions, epochs = list(res["regions"]), list(res["epochs"])
    default = [r for r in REGIONS if r in regions] or regions[:3]
    chosen = st.multiselect("Regions", regions, default=default, key="td_regions")
    layer = res.get("layer", "?")
    verdict = cache.layer_sanity(exp, runs, epochs[-1])[0].get(layer)
    check = f"{verdict.text} at epoch {epochs[-1]}" if verdict else "? sanity not checked"
    st.caption(
        f"Share of each model's positive Grad-CAM mass (layer {layer}, {check}) "
        f"inside each region, averaged over {res.get('n_probe', n_probe)} images."
    )
    if verdict and verdict.passes is False:
        st.warning(
            f"Grad-CAM at {layer} fails the randomisation sanity check for "
            f"{', '.join(verdict.failed)}: these shares are not evidence of where the model looks."
        )
    fig = go.Figure()
    names = [r.name for r in runs if r.name in res["runs"]]  # L1, L2 order (JSON keys are sorted)
    for j, region in enumerate(chosen):
        for i, name in enumerate(names):
            fig.add_scatter(
                x=epochs,
                y=res["runs"][name][region],
                mode="lines+markers",
                name=f"L{i + 1} {name}: {region}",
                line={"color": COLOURS[j % len(COLOURS)], "dash": "solid" if i == 0 else "dash"},
            )
    fig.update_layout(
        height=380,
        xaxis_title="epoch",
        yaxis_title="share of Grad-CAM mass",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    fig.update_xaxes(dtick=1)
    st.plotly_chart(fig, key="td_loc")


def main() -> None:
    st.title("Training dynamics")
    exp = ui.current_experiment()
    runs = ui.pick_runs(exp, "td")
    ui.epochs_or_stop(runs)
    with ui.guard("Weight dynamics"):
        weight_dynamics(exp, runs)
    with ui.guard("CKA"):
        cka_section(exp, runs)
    with ui.guard("Attention localisation"):
        localisation_section(exp, runs)
    with ui.guard("Trustworthy comparison"):
        trust_view.render(exp, runs)


main()

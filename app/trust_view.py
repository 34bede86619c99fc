"""Training dynamics, trustworthy part: the control run beside L1 vs L2, intervals as error bars,
per-layer region shares, dataset-mean attribution maps and the cross-task probe heatmap.

One call, :func:`cache.trust_compare` (``fxcore compare``), feeds every chart here.
"""

from __future__ import annotations

import cache
import charts
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import ui

from fxcore.explain.attribution import layer_verdicts
from fxcore.store.results import provenance_label
from fxcore.store.runs import Experiment, Run

PAIR, CONTROL = "#1f77b4", "#7f7f7f"


def _errors(values, low, high) -> dict:
    v, lo, hi = (np.asarray(a, float) for a in (values, low, high))
    return {"type": "data", "symmetric": False, "array": hi - v, "arrayminus": v - lo}


def _interval_hover(values, low, high) -> dict:
    """Hover text of a trace with intervals, printed by the app's one precision rule."""
    text = [charts.interval(v, lo, hi) for v, lo, hi in zip(values, low, high)]
    return {"text": text, "hovertemplate": "%{x}<br>%{text}<extra>%{fullData.name}</extra>"}


def _layout(fig: go.Figure, title: str, ylabel: str, xlabel: str = "layer") -> go.Figure:
    fig.update_layout(
        title=title,
        height=340,
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.45},
    )
    fig.update_xaxes(tickangle=-45, automargin=True)  # full layer names, never clipped
    fig.update_yaxes(automargin=True)
    return fig


def cka_vs_control(res: dict, layers: list[str], t: int) -> go.Figure:
    """CKA per layer at epoch index t: L1 vs L2 and L1 vs control, both with CIs, and the null."""
    fig = go.Figure()
    parts = [
        ("L1 vs L2", res.get("cka"), PAIR),
        ("L1 vs control", res.get("control", {}).get("cka"), CONTROL),
    ]
    for name, c, colour in parts:
        if not c:
            continue
        v = [c["layers"][k][t] for k in layers]
        lo, hi = [c["low"][k][t] for k in layers], [c["high"][k][t] for k in layers]
        fig.add_scatter(
            x=layers,
            y=v,
            name=name,
            mode="lines+markers",
            line={"color": colour},
            error_y=_errors(v, lo, hi),
            **_interval_hover(v, lo, hi),
        )
    null = res["cka"]["null"]
    fig.add_scatter(
        x=layers,
        y=[null[k][t] for k in layers],
        name="permuted-pairing null",
        mode="lines",
        line={"color": "black", "dash": "dot"},
    )
    return _layout(fig, "CKA per layer (95% bootstrap CI)", "linear CKA (1 = same)")


def cosine_vs_control(res: dict, field: str, layers: list[str], t: int, title: str) -> go.Figure:
    fig = go.Figure()
    for name, part, colour in (
        ("L1 vs L2", res, PAIR),
        ("L1 vs control", res.get("control"), CONTROL),
    ):
        if part:
            d = part["dynamics"]["layers"]
            fig.add_scatter(
                x=layers,
                y=[d[k][field][t] for k in layers if k in d],
                name=name,
                mode="lines+markers",
                line={"color": colour},
            )
    return _layout(fig, title, "cosine" if "cosine" in field else "share")


def shares_figure(att: dict, names: list[str], region: str, group: str, t: int) -> go.Figure:
    """Share of attribution energy in ``region`` per source (layer/method), with CIs."""
    fig = go.Figure()
    srcs = list(att["sources"])
    verdicts = layer_verdicts({n: att["sanity"].get(n, {}) for n in names}, srcs)
    labels = [f"{s.removeprefix('gradcam:')} {verdicts[s].mark}" for s in srcs]
    for i, name in enumerate(names):
        rows = [att["shares"][name][s][group][region][t] for s in srcs]
        v, lo, hi = zip(*rows)
        fig.add_bar(
            x=labels,
            y=v,
            name=f"{'L1' if i == 0 else 'L2' if i == 1 else 'control'} {name}",
            error_y=_errors(v, lo, hi),
            textposition="none",  # the interval is for hovering, not printed on the bar
            **_interval_hover(v, lo, hi),
        )
    fig.add_hline(
        y=att["area"].get(region, 0.0), line_dash="dot", annotation_text="area (uniform map)"
    )
    return _layout(
        fig,
        f"Share of attribution energy in {region} ({group} the attribute)",
        "share of energy (0–1)",
        "Grad-CAM layer / input method",
    )


def mean_map_figures(
    att: dict, names: list[str], src: str, group: str, t: int, region: str
) -> list[go.Figure]:
    maps = [np.asarray(att["maps"][n][src][group][t], float) for n in names[:2]]
    if len(maps) == 2:
        maps.append(maps[0] - maps[1])
    titles = [f"L1 {names[0]}", f"L2 {names[1]}" if len(names) > 1 else "", "L1 − L2"]
    hi = max(float(np.nanmax(m)) for m in maps[:2])
    outline = att.get("region_maps", {}).get(region)
    figs = []
    for i, m in enumerate(maps):
        diff = i == 2
        lo_hi = ui.symmetric([m]) if diff else (0.0, hi)
        fig = ui.heatmap_figure(
            m,
            title=titles[i],
            zmin=lo_hi[0],
            zmax=lo_hi[1],
            colorscale="RdBu_r" if diff else "Viridis",
            square=True,
            height=300,
            value_name="energy (1 = uniform)",
            axis_titles=("image column (cells)", "image row (cells)"),
        )
        if outline is not None:
            o = np.asarray(outline, float)
            fig.add_contour(
                z=o,
                showscale=False,
                contours={
                    "coloring": "lines",
                    "start": 0.5 * o.max(),
                    "end": 0.5 * o.max(),
                    "size": 1,
                },
                line={"color": "white", "width": 2},
                hoverinfo="skip",
                name=region,
            )
        figs.append(fig)
    return figs


def probe_figures(pr: dict, names: list[str], attr: str) -> list[go.Figure]:
    layers, epochs = list(pr["layers"]), list(pr["epochs"])
    figs = []
    for name in names:
        table = pr["runs"][name][attr]
        m = np.array([[row[0] for row in table[k]] for k in layers], float)
        figs.append(
            ui.layer_epoch_figure(
                layers,
                epochs,
                m,
                title=f"{name} features → {attr}",
                zmin=0.5,
                zmax=1.0,
                value_name="probe accuracy",
            ).update_traces(colorbar_title_text="held-out accuracy", colorbar_title_side="right")
        )
    return figs


def render(exp: Experiment, runs: list[Run]) -> None:
    st.subheader("Is the difference real? Control run, intervals, layers and methods")
    if len(runs) < 2 or exp.info.get("dataset") in (None, "imported"):
        st.info("Needs two runs of a dataset with probe images.")
        return
    if not st.toggle(
        "Compare against the control, with intervals, per layer and method "
        "(computed once, then read from the cache)",
        key="tr_on",
    ):
        return
    c1, c2 = st.columns(2)
    n_probe = int(c1.number_input("Probe images", 8, 4096, 128, step=8, key="tr_n"))
    n_boot = int(c2.number_input("Bootstrap resamples", 10, 2000, 200, step=10, key="tr_boot"))
    with st.spinner("Comparing L1, L2 and the control on the probe images (cached on disk)…"):
        res = cache.trust_compare(exp, runs[:2], n_probe, n_boot)
    if prov := res.get("cka", {}).get("provenance"):
        st.caption(f"Shipped with the experiment: {provenance_label(prov)}.")
    ctl = res.get("control")
    if ctl:
        st.caption(
            f"Control: **{ctl['runs'][1]}**, the same task as L1 from the same start with "
            "its own batch order: how different two runs of one task are."
        )
    else:
        st.info(
            "This experiment has no control run: train with `--controls 1` to see how "
            "different two runs of the same task are (the noise floor)."
        )
    epochs = list(res["cka"]["epochs"])
    epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key="tr_epoch")
    t = epochs.index(epoch)
    layers = runs[0].model_order(res["cka"]["layers"])
    st.caption(charts.UNBIASED_CKA_NOTE)
    c1, c2 = st.columns(2)
    c1.plotly_chart(cka_vs_control(res, layers, t), key="tr_cka")
    wkeys = [f"{k}.weight" for k in layers if f"{k}.weight" in res["dynamics"]["layers"]]
    t_dyn = list(res["dynamics"]["epochs"]).index(epoch)
    c2.plotly_chart(
        cosine_vs_control(
            res, "update_cosine", wkeys, t_dyn, "Update cosine cos(ΔW_A, ΔW_B) from the shared init"
        ),
        key="tr_upd",
    )
    att = res.get("attribution")
    names = [n for n in [r.name for r in runs[:2]] + ([ctl["runs"][1]] if ctl else [])]
    if att and att.get("shares"):
        st.caption(
            f"Regions: {att['regions_from']}. Energy-based pointing game over "
            f"{att['n_probe']} probe images. Beside each source, the cascading "
            f"randomisation check at epoch {att['epochs'][-1]} for every model shown: ✓ passes, "
            "✗ fails for one of them (not evidence), as on Feature maps."
        )
        c1, c2 = st.columns(2)
        region = c1.selectbox("Region", att["regions"], key="tr_region")
        group = c2.radio(
            "Images",
            ["with", "without"],
            horizontal=True,
            key="tr_group",
            format_func=lambda g: f"{g} L1's attribute",
        )
        ta = list(att["epochs"]).index(epoch)
        st.plotly_chart(shares_figure(att, names, region, group, ta), key="tr_shares")
        src = st.selectbox("Mean map of", att["sources"], key="tr_src")
        cols = st.columns(3)
        for i, fig in enumerate(mean_map_figures(att, names, src, group, ta, region)):
            cols[i].plotly_chart(fig, key=f"tr_map_{i}")
    pr = res.get("probes")
    if pr:
        attr = st.selectbox("Probe attribute", pr["attributes"], key="tr_probe_attr")
        st.caption(
            f"Held-out accuracy of a logistic-regression probe on each layer's pooled "
            f"features (chance {pr['chance'][attr]:.2f})."
        )
        cols = st.columns(len(names))
        for i, fig in enumerate(probe_figures(pr, names, attr)):
            cols[i].plotly_chart(fig, key=f"tr_probe_{i}")

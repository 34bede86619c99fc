"""Dataset: attribute balance, co-occurrence of the chosen attributes and a sample grid."""

from __future__ import annotations

import cache
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import ui

from fxcore.data.inputs import capabilities
from fxcore.store.runs import Experiment


def rates_figure(names: list[str], rates: np.ndarray, chosen: list[str], title: str) -> go.Figure:
    order = np.argsort(rates)[::-1]
    colours = ["#d62728" if names[i] in chosen else "#1f77b4" for i in order]
    fig = go.Figure(
        go.Bar(
            x=[names[i] for i in order],
            y=[float(rates[i]) for i in order],
            marker_color=colours,
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        yaxis_title="share of images with the attribute",
        xaxis_title="attribute",
        yaxis_tickformat=".0%",
        height=420,
        xaxis_tickangle=-60,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def joint_table(a: str, b: str, ra: float, rb: float, co: float) -> pd.DataFrame:
    """2x2 joint distribution of two binary attributes from P(a), P(b) and P(a, b)."""
    return pd.DataFrame(
        [[co, ra - co], [rb - co, 1 - ra - rb + co]],
        index=[f"{a} = 1", f"{a} = 0"],
        columns=[f"{b} = 1", f"{b} = 0"],
    )


def cooccurrence(stats: dict, chosen: list[str]) -> None:
    names, rates, co = stats["names"], stats["positive_rate"], stats["cooccurrence"]
    idx = [names.index(a) for a in chosen if a in names]
    if len(idx) < 2:
        st.info("Co-occurrence needs at least two chosen binary attributes.")
        return
    a, b = idx[0], idx[1]
    c1, c2 = st.columns(2)
    with c1:
        st.markdown(f"**Joint distribution of {names[a]} and {names[b]}**")
        table = joint_table(names[a], names[b], rates[a], rates[b], co[a, b])
        st.dataframe(table.style.format("{:.1%}"))
        if np.isfinite(stats["phi"][a, b]):
            st.caption(
                f"Correlation (phi) {stats['phi'][a, b]:+.3f}: a model for one "
                "attribute can partly predict the other from this overlap alone."
            )
    with c2:
        sel = [names[i] for i in idx]
        cond = np.asarray(stats["conditional"])[np.ix_(idx, idx)]
        fig = go.Figure(
            go.Heatmap(
                z=cond,
                x=sel,
                y=sel,
                zmin=0,
                zmax=1,
                colorscale="Blues",
                text=np.round(cond * 100).astype("float"),
                texttemplate="%{text:.0f}%",
                hovertemplate="P(%{x}=1 | %{y}=1) = %{z:.1%}<extra></extra>",
            )
        )
        fig.update_yaxes(autorange="reversed", title_text="given this attribute (row)")
        fig.update_xaxes(title_text="attribute present (column)")
        fig.update_layout(
            title="P(column = 1 | row = 1)", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}
        )
        st.plotly_chart(fig, key="ds_cond")


def faces_statistics(exp: Experiment, chosen: list[str]) -> None:
    with st.spinner("Reading the attribute labels…"):
        stats = cache.attribute_statistics(exp.info.get("config", {}))
    names, rates = stats["names"], stats["positive_rate"]
    title = (
        f"CelebA: positive rate of all 40 attributes ({stats['num_rows']:,} images)"
        if stats["dataset"] == "celeba"
        else f"SynthFaces: positive rate of every attribute (training split, "
        f"{stats['num_rows']:,} images)"
    )
    st.plotly_chart(rates_figure(names, rates, chosen, title), key="ds_rates")
    st.caption("Red: the attributes this experiment trains on.")
    st.subheader("Co-occurrence of the chosen attributes")
    cooccurrence(stats, chosen)


def mnist_statistics(exp: Experiment) -> None:
    stats = cache.attribute_statistics(exp.info.get("config", {}))
    fig = go.Figure()
    for split, counts in stats["counts"].items():
        fig.add_bar(x=list(range(10)), y=counts, name=f"{split} ({sum(counts):,})")
    fig.update_layout(
        title="MNIST: images per digit class",
        barmode="group",
        height=380,
        xaxis={"title": "digit", "dtick": 1},
        yaxis_title="images",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    st.plotly_chart(fig, key="ds_mnist")


def sample_grid(exp: Experiment, chosen: list[str]) -> None:
    st.subheader("Samples (validation split)")
    n = int(st.number_input("Images", 4, 64, 16, step=4, key="ds_n"))
    cfg = exp.info.get("config", {})
    items = cache.sample_grid(cache.freeze(cfg), n)
    show = chosen or None
    captions = []
    for _, labels in items:
        keys = [k for k in (show or labels) if k in labels]
        captions.append(" ".join(f"{k}={labels[k]:g}" for k in keys))
    st.image([ui.upscale(img, 112) for img, _ in items], caption=captions, width=112)


def main() -> None:
    st.title("Dataset")
    exp = ui.current_experiment()
    name = exp.info.get("dataset", exp.info.get("config", {}).get("dataset"))
    if not capabilities(exp.info).has_dataset:
        st.info("This experiment was imported from state dicts; it records no dataset.")
        return
    chosen = list(exp.info.get("attributes") or [r.attribute for r in exp.runs])
    st.caption(f"**{exp.name}** trains on {name}: {', '.join(chosen)}")
    with ui.guard("Attribute statistics"):
        if name == "mnist":
            mnist_statistics(exp)
        else:
            faces_statistics(exp, chosen)
    with ui.guard("Sample grid"):
        sample_grid(exp, chosen)


main()

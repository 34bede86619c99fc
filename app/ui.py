"""UI helpers shared by the pages: error guards, pickers, image and figure builders.

Figure and image builders are plain functions of arrays (no Streamlit call), so tests can check
them directly, e.g. the payload of a heatmap of a huge tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import cache
import live
import matplotlib
import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from fxcore.core.errors import FxcoreError, ImageInputError
from fxcore.store.runs import Experiment, Run, common_epochs

if TYPE_CHECKING:
    from fxcore.upload.faces import PreparedImage

log = logging.getLogger("fxcore.app")

TRAIN_CELEBA = (
    "python -m fxcore train --dataset celeba --data-root /path/to/celeba --attributes Smiling Male "
    "--model vgg19 --epochs 10 --out checkpoints/celeba-vgg19"
)
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp"]
MAX_FIGURE_BYTES = 2_000_000
DISPLAY_PX = 224  # small model inputs (32-64 px) are upscaled to this for display
PAGES: dict[str, st.Page] = {}  # key -> page, as app/Home.py declares them (st.navigation)


# ---------------------------------------------------------------- errors


def is_image_error(exc: BaseException) -> bool:
    """An upload that is not a usable image (its message tells the user what to do)."""
    return isinstance(exc, ImageInputError)


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show any failure inside the block as a readable message; the rest of the page goes on."""
    try:
        yield
    except ScriptControlException:  # st.stop / st.rerun must pass through
        raise
    except FxcoreError as exc:  # written for the user: its message alone
        if not is_image_error(exc):
            log.warning("%s failed", what, exc_info=True)
        st.error(f"{what}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug: still a message, never a traceback
        log.warning("%s failed", what, exc_info=True)
        st.error(f"{what} failed ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------- experiment selection


def page_setup(pages: dict[str, st.Page], follow: bool = True) -> None:
    """Page config and the sidebar experiment picker, drawn by the entry script for every page.

    ``follow``: while the picked experiment trains, show its progress in the sidebar and rerun the
    page when it saves an epoch (see :func:`live.sidebar_follow`); Home follows runs itself.
    """
    PAGES.update(pages)
    st.set_page_config(page_title="fxcore", page_icon=":material/compare:", layout="wide")
    sidebar_experiment_picker()
    if follow:
        with guard("Following the training"):
            exp = cache.experiment(st.session_state.get("experiment"))
            if exp is not None:
                live.sidebar_follow(exp.name, common_epochs(exp.runs))


def _picked() -> None:
    st.session_state["experiment"] = st.session_state["experiment_picker"]


def sidebar_experiment_picker() -> None:
    """The experiment chooser shown on every page.

    The choice lives in ``st.session_state["experiment"]`` (a plain key, so it survives page
    switches, unlike widget state) and in the ``?experiment=`` query parameter (shareable links).
    """
    with guard("Listing experiments"):
        exps, problems = cache.experiments()
        names = [e.name for e in exps]
        if not names:
            st.sidebar.caption(f"No experiment in `{cache.checkpoints_root()}`")
            return
        current = st.session_state.get("experiment")
        if current not in names:
            asked = st.query_params.get("experiment")
            current = asked if asked in names else names[0]
        st.session_state["experiment"] = current
        st.sidebar.selectbox(
            "Experiment",
            names,
            index=names.index(current),
            key="experiment_picker",
            on_change=_picked,
        )
        if st.query_params.get("experiment") != current:
            st.query_params["experiment"] = current
        if problems:
            st.sidebar.warning(
                f"{len(problems)} experiment folder(s) could not be opened (see Home)"
            )


def current_experiment() -> Experiment:
    """The experiment picked in the sidebar; stops the page with a hint when there is none."""
    exp = cache.experiment(st.session_state.get("experiment"))
    if exp is None:
        exps, _ = cache.experiments()
        exp = exps[0] if exps else None
    if exp is None:
        st.info(f"No experiment found in `{cache.checkpoints_root()}`. Train the demo on Home.")
        st.page_link(PAGES["home"], label="Go to Home", icon=":material/home:")
        st.stop()
    if not exp.runs:
        st.error(f"Experiment {exp.name} has no runs (no run.json in its subfolders).")
        st.stop()
    return exp


def run_label(i: int, run: Run) -> str:
    return f"L{i + 1}: {run.attribute}"


def pick_runs(exp: Experiment, prefix: str) -> list[Run]:
    """Two run selectors (L1, L2) when the experiment has more than one run."""
    names = [r.name for r in exp.runs]
    if len(names) == 1:
        return list(exp.runs)
    c1, c2 = st.columns(2)
    a = c1.selectbox("L1 model", names, index=0, key=f"{prefix}_l1", format_func=_run_fmt(exp))
    b = c2.selectbox("L2 model", names, index=1, key=f"{prefix}_l2", format_func=_run_fmt(exp))
    if a == b:
        st.warning("L1 and L2 are the same run: the differences below are zero.")
    return [exp.run(a), exp.run(b)]


def _run_fmt(exp: Experiment):
    return lambda name: f"{name} ({exp.run(name).attribute})"


def epochs_or_stop(runs: Sequence[Run]) -> list[int]:
    """Common valid epochs of the runs; bad ones are reported, none at all stops the page."""
    bad_epochs_note(runs)
    eps = common_epochs(runs)
    if not eps:
        st.error("These runs share no valid epoch: every checkpoint is missing or damaged.")
        st.stop()
    return eps


def bad_epochs_note(runs: Sequence[Run]) -> None:
    bad = [(r, e, why) for r in runs for e, why in sorted(r.bad_epochs().items())]
    if bad:
        with st.expander(f"⚠️ {len(bad)} epoch(s) skipped: missing or damaged checkpoints"):
            for run, epoch, why in bad:
                st.markdown(f"- **{run.name}** epoch {epoch}: `{why}`")


def epoch_range(epochs: list[int], key: str) -> tuple[int, int]:
    """A range slider over the valid epochs (single epoch = A..A)."""
    if len(epochs) == 1:
        st.caption(f"Only epoch {epochs[0]} is available.")
        return epochs[0], epochs[0]
    lo, hi = st.select_slider(
        "Epoch range (inclusive; A..A = one epoch)",
        options=epochs,
        value=(epochs[0], epochs[-1]),
        key=key,
    )
    return int(lo), int(hi)


def epoch_picker(epochs: list[int], key: str, label: str = "Epoch") -> int:
    if len(epochs) == 1:
        st.caption(f"{label}: {epochs[0]} (the only valid one)")
        return epochs[0]
    return int(st.select_slider(label, options=epochs, value=epochs[-1], key=key))


# ---------------------------------------------------------------- uploads


def prepare_image(
    data: bytes,
    image_size: int,
    normalize: bool,
    crop_face: bool = False,
    mode: str = "RGB",
    align: bool = False,
) -> tuple[PreparedImage | None, str | None]:
    """Prepare uploaded bytes as the models' input: ``(prepared, None)`` or ``(None, message)``."""
    try:
        return cache.prepared_upload(
            bytes(data), image_size, normalize, crop_face, mode, align
        ), None
    except Exception as exc:  # noqa: BLE001 - e.g. an exotic decoder failure: still a message
        if is_image_error(exc):
            return None, f"Cannot use this file: {exc}"
        log.warning("upload failed", exc_info=True)
        return None, f"Cannot use this file ({type(exc).__name__}): upload a JPEG or PNG photo"


# ---------------------------------------------------------------- images


def landmark_picture(data: bytes, prepared: PreparedImage, width: int = 320) -> Image.Image:
    """The upload at ``width`` px with its face box and the five landmarks drawn on it."""
    from PIL import ImageDraw

    from fxcore.upload.faces import load_image

    img = load_image(data)
    k = width / img.width
    img = img.resize((width, max(1, round(img.height * k))))
    draw = ImageDraw.Draw(img)
    if prepared.face_box:
        draw.rectangle([v * k for v in prepared.face_box], outline=(255, 200, 0), width=2)
    colours = [(0, 255, 0), (0, 255, 0), (0, 160, 255), (255, 0, 80), (255, 0, 80)]
    for (x, y), c in zip(prepared.landmarks_original * k, colours):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c, outline=(0, 0, 0))
    return img


def upscale(img: np.ndarray | Image.Image, size: int = DISPLAY_PX) -> np.ndarray:
    """Nearest-neighbour upscale so each model pixel stays a visible square."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
    if pil.width >= size:
        return np.asarray(pil)
    return np.asarray(pil.resize((size, size * pil.height // pil.width), Image.NEAREST))


def colourise(m: np.ndarray, lo: float, hi: float, cmap: str = "viridis") -> np.ndarray:
    """(H, W) float map -> uint8 RGB with a fixed range; NaN becomes white."""
    m = np.asarray(m, np.float32)
    span = hi - lo if hi > lo else 1.0
    rgb = matplotlib.colormaps[cmap](np.clip((m - lo) / span, 0, 1))[..., :3]
    rgb[np.isnan(m)] = 1.0
    return np.rint(rgb * 255).astype(np.uint8)


# ---------------------------------------------------------------- figures


def heatmap_figure(
    z: np.ndarray,
    *,
    title: str = "",
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "RdBu_r",
    block: tuple[int, int] = (1, 1),
    origin: tuple[int, int] = (0, 0),
    height: int = 380,
    value_name: str = "value",
    square: bool = False,
    axis_titles: bool | tuple[str, str] = True,
) -> go.Figure:
    """Interactive heatmap; x/y are the original column/row indices of each (pooled) cell.

    Cell ``(i, j)`` covers rows ``origin_r + i*block_r .. + block_r-1`` (and likewise columns), so
    hovering shows where in the full tensor a cell lies. ``axis_titles``: (x, y) titles, True
    for "column"/"row", False for none; ``value_name`` titles the colour bar. Arrays are sent as float32/int32
    (plotly encodes numpy arrays as base64 binary), which keeps a 512x512 map under 2 MB.
    """
    z = np.asarray(z, dtype=np.float32)
    br, bc = block
    x = (origin[1] + np.arange(z.shape[1]) * bc).astype(np.int32)
    y = (origin[0] + np.arange(z.shape[0]) * br).astype(np.int32)
    rows = "row %{y}" + (f" (+{br - 1})" if br > 1 else "")
    cols = "col %{x}" + (f" (+{bc - 1})" if bc > 1 else "")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            hovertemplate=f"{rows}<br>{cols}<br>{value_name} %{{z:.4g}}<extra></extra>",
            colorbar={"thickness": 10, "xpad": 4, "title": {"text": value_name, "side": "right"}},
        )
    )
    titles = ("column", "row") if axis_titles is True else axis_titles or (None, None)
    fig.update_yaxes(autorange="reversed", title_text=titles[1])
    fig.update_xaxes(title_text=titles[0])
    if square:  # one data unit is as tall as it is wide (images, unit tiles)
        fig.update_yaxes(scaleanchor="x", constrain="domain")
        fig.update_xaxes(constrain="domain")
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def symmetric(maps: Sequence[np.ndarray], robust: bool = False) -> tuple[float, float]:
    """Range ``(-m, m)`` covering every finite value (or the 99.5th percentile of |values|)."""
    vals = [np.abs(np.asarray(m, np.float64)) for m in maps]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return -1.0, 1.0
    m = max(float(np.percentile(v, 99.5)) if robust else float(v.max()) for v in vals)
    return (-m, m) if m > 0 else (-1.0, 1.0)


def positive(maps: Sequence[np.ndarray], robust: bool = False) -> tuple[float, float]:
    """Range ``(0, m)`` for non-negative maps such as variances."""
    lo, hi = symmetric(maps, robust)
    return 0.0, hi


def figure_bytes(fig: go.Figure) -> int:
    return len(fig.to_json())


def line_figure(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    title: str = "",
    xlabel: str = "epoch",
    ylabel: str = "",
    height: int = 320,
    dashes: dict[str, str] | None = None,
    colours: dict[str, str] | None = None,
) -> go.Figure:
    fig = go.Figure()
    for name, ys in series.items():
        line = {"dash": (dashes or {}).get(name, "solid")}
        if colours and name in colours:
            line["color"] = colours[name]
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=[None if v is None else float(v) for v in ys],
                mode="lines+markers",
                name=name,
                line=line,
            )
        )
    fig.update_layout(
        title=title,
        height=height,
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    if xlabel == "epoch":
        fig.update_xaxes(dtick=1)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def layer_epoch_figure(
    layers: list[str],
    epochs: list[int],
    values: np.ndarray,
    *,
    title: str,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "Viridis",
    value_name: str = "value",
    raw: np.ndarray | None = None,
) -> go.Figure:
    """Layer x epoch heatmap (rows = layers in model order), full layer names as ticks.

    ``values`` are what the colours show; ``raw`` (same shape), when given, what hovering a cell
    reports (e.g. the drift itself under a per-layer colour scale).
    """
    z = np.asarray(values, np.float32)
    shown = z if raw is None else np.asarray(raw, np.float32)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(e) for e in epochs],
            y=layers,
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            customdata=shown,
            hovertemplate=f"%{{y}}<br>epoch %{{x}}<br>{value_name} %{{customdata:.4g}}"
            "<extra></extra>",
            colorbar={"thickness": 12},
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="layer", automargin=True)
    fig.update_xaxes(title_text="epoch", type="category")
    fig.update_layout(
        title=title,
        height=max(260, 22 * len(layers) + 120),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig

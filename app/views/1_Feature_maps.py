"""Feature maps: what L1 and L2 see in one face, at one epoch and layer, side by side."""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass

import cache
import numpy as np
import streamlit as st
import ui

from fxcore.compare.analysis import ModelView
from fxcore.core.errors import FxcoreError
from fxcore.data.inputs import capabilities, input_spec
from fxcore.explain.activations import conv_layers, map_ranges, overlay
from fxcore.explain.attribution import Verdict
from fxcore.explain.layers import cam_layer
from fxcore.explain.sanity import default_layer
from fxcore.measures.stats import tile_grid
from fxcore.store.runs import Experiment, Run
from fxcore.upload.align import ALIGN_METHODS
from fxcore.upload.faces import PreparedImage, prepare_upload

SOURCES = ("Sample from the dataset", "Upload a photo")
# Upload framing -> (crop_face, align) of fxcore.upload.faces.prepare_upload.
FRAMINGS = {
    "Align like CelebA": (True, True),
    "Face crop": (True, False),
    "Centre crop": (False, False),
}
MIN_SIDE = 16  # region-resolving Grad-CAM: maps at least this many pixels wide


@dataclass
class Picked:
    """The prepared input, a cache key for it, a caption, and what the reader must be told."""

    prepared: PreparedImage
    key: str
    caption: str
    no_face: bool = False  # a face framing was asked for and none was found
    photo: bool = False  # an upload (not an image of the experiment's dataset)


def dataset_problem(exp: Experiment) -> str | None:
    """Why the dataset's images cannot be shown here (None when they can)."""
    can = capabilities(exp.info)
    if not can.probe_images:
        return "imported runs carry no dataset"
    try:
        cache.dataset(exp.info.get("config", {}), "val")
    except FxcoreError:
        root = exp.info.get("config", {}).get("data_root")
        return f"{can.trained_on} are not on this machine" + (f" (`{root}`)" if root else "")
    return None


def choose_image(exp: Experiment, problem: str | None) -> Picked | None:
    """The input the models are run on (``problem``: why the dataset's images cannot be)."""
    size, normalize, mode = astuple(input_spec(exp.info))
    cfg = exp.info.get("config", {})
    source = st.radio(
        "Image", SOURCES if problem is None else SOURCES[1:], horizontal=True, key="fm_src"
    )
    if problem is not None:
        st.caption(f"Dataset samples unavailable: {problem}. Upload a photo instead.")
    if source == SOURCES[0]:
        n = len(cache.dataset(cfg, "val"))
        index = int(
            st.number_input(f"Validation image (0–{n - 1})", 0, max(0, n - 1), 0, key="fm_index")
        )
        s = cache.sample(cfg, index)
        labels = ", ".join(f"{k}={v:g}" for k, v in s.labels.items())
        return Picked(prepare_upload(s.image, size, normalize, mode=mode), f"val:{index}", labels)
    c1, c2 = st.columns([3, 1])
    upload = c1.file_uploader(
        "Face photo (JPEG, PNG or WebP)", type=ui.UPLOAD_TYPES, key="fm_upload"
    )
    framing = c2.radio(
        "Framing",
        list(FRAMINGS),
        key="fm_framing",
        help="Align: find the face and its landmarks and warp it into CelebA's aligned "
        "framing (as the training images were made). Face crop: frame the "
        "face box only. The input actually fed to the models is shown on the "
        "left.",
    )
    if upload is None:
        st.info("Upload a face photo to compare the two models on it.")
        return None
    data = upload.getvalue()
    crop, align = FRAMINGS[framing]
    prepared, error = ui.prepare_image(
        data, size, normalize, crop_face=crop, mode=mode, align=align
    )
    if error:
        st.error(error)
        return None
    if prepared.landmarks_original is not None:
        with st.expander("Alignment: detected face and landmarks", expanded=True):
            a, b = st.columns(2)
            a.image(
                ui.landmark_picture(data, prepared),
                caption="Upload with its face box and five points, aligned from "
                + ALIGN_METHODS[prepared.align_method],
            )
            b.image(prepared.aligned, caption="Aligned to CelebA's 178×218 framing")
    key = f"{hashlib.sha256(data).hexdigest()}:{framing}"
    no_face = crop and not prepared.cropped
    return Picked(prepared, key, f"{upload.name}: {prepared.message}", no_face, photo=True)


def input_warnings(exp: Experiment, picked: Picked) -> None:
    """What makes the outputs below hard to read, in boxes a reader cannot miss."""
    if picked.no_face:
        how = picked.prepared.message
        st.warning(
            "**No face found** in this photo"
            + ("" if how.startswith("no face found") else f" ({how})")
            + ": the models saw the centre of the picture, so the probabilities below are not "
            "meaningful.",
            icon=":material/warning:",
        )
    can = capabilities(exp.info)
    if picked.photo and not can.photos:
        st.warning(
            f"These models were trained on {can.trained_on}: a photo lies outside what they "
            "learned, so what they make of it says little.",
            icon=":material/info:",
        )


def sanity_note(verdict: Verdict | None, layer: str, epoch: int, why: str | None) -> None:
    """The randomisation check of the Grad-CAM shown, above it."""
    if verdict is None or verdict.passes is None:
        st.caption(
            f"? Grad-CAM at {layer}: the randomisation sanity check was not run "
            f"(it needs the dataset's validation images: {why or 'no result'})."
        )
    elif verdict.passes:
        st.caption(
            f"✓ Grad-CAM at {layer} passes the randomisation sanity check for these models "
            f"(epoch {epoch}): scrambling the top layers changes it."
        )
    else:
        corr = ", ".join(f"{m} {verdict.rank_corr[m]:.2f}" for m in verdict.failed)
        st.warning(
            f"✗ Grad-CAM at **{layer}** fails the randomisation sanity check for "
            f"{', '.join(verdict.failed)} (epoch {epoch}; rank correlation with the maps of a "
            f"scrambled model {corr}, pass < 0.50): it survives scrambling the model's top "
            "layers, so it is not evidence of what the model uses.",
            icon=":material/gpp_bad:",
        )


def tiles(view: ModelView, lo: float, hi: float) -> np.ndarray:
    grid = tile_grid(view.top_maps, cols=4, pad=1)
    rgb = ui.colourise(grid, lo, hi)
    side = view.top_maps.shape[-1]
    return ui.upscale(rgb, grid.shape[1] * max(1, 96 // side))


def region_shares(view: ModelView, masks: dict[str, np.ndarray]) -> str:
    """Grad-CAM share inside the upload's own eye/nose/mouth boxes (from its landmarks)."""
    from fxcore.measures.similarity import localisation_shares

    cam = np.asarray(view.cam_positive, np.float64)
    if not masks or cam.shape != next(iter(masks.values())).shape:
        return ""
    shares = localisation_shares(np.clip(cam, 0, None)[None], masks)
    return "Grad-CAM share in this face's regions: " + " · ".join(
        f"{k} {v:.2f}" for k, v in shares.items() if v == v
    )


def model_mark(verdict: Verdict | None, run: Run) -> str:
    """This model's own result of the sanity check, for the caption of its Grad-CAM."""
    if verdict is None or run.name not in verdict.rank_corr:
        return ""
    return " (✗ sanity)" if run.name in verdict.failed else " (✓ sanity)"


def render(
    runs: list[Run],
    views: list[ModelView],
    image: np.ndarray,
    shared: bool,
    negative: bool,
    masks: dict[str, np.ndarray] | None = None,
    meaningless: bool = False,
    verdict: Verdict | None = None,
) -> None:
    cm = map_ranges([v.channel_mean for v in views], shared)
    top = map_ranges([v.top_maps for v in views], shared)
    pos = map_ranges([v.cam_positive for v in views], shared)
    neg = map_ranges([v.cam_negative for v in views], shared)
    for i, (col, run, view) in enumerate(zip(st.columns(len(views), gap="large"), runs, views)):
        with col:
            st.subheader(ui.run_label(i, run))
            st.metric(
                f"P({run.attribute})" + (" · not meaningful: no face" if meaningless else ""),
                f"{view.probability:.3f}",
                help=f"sigmoid of the logit {view.logit:+.3f}",
            )
            if masks and (text := region_shares(view, masks)):
                st.caption(text)
            pics = [
                (overlay(image, view.channel_mean, *cm[i]), "Channel-mean activation"),
                (
                    overlay(image, view.cam_positive, *pos[i]),
                    f"Grad-CAM: evidence for {run.attribute}{model_mark(verdict, run)}",
                ),
            ]
            if negative:
                pics.append(
                    (
                        overlay(image, view.cam_negative, *neg[i]),
                        f"Grad-CAM: evidence against {run.attribute}",
                    )
                )
            for sub, (pic, caption) in zip(st.columns(len(pics)), pics):
                sub.image(ui.upscale(pic), caption=caption, width="stretch")
            fig = ui.heatmap_figure(
                view.channel_mean,
                zmin=cm[i][0],
                zmax=cm[i][1],
                square=True,
                colorscale="Jet",
                title="Channel mean (input pixels)",
                height=320,
                value_name="mean activation",
                axis_titles=("image column (px)", "image row (px)"),
            )
            st.plotly_chart(fig, key=f"fm_cm_{i}")
            st.image(
                tiles(view, *top[i]),
                caption=f"Top {len(view.top_channels)} channels "
                f"(by mean activation): {view.top_channels}",
            )


def main() -> None:
    st.title("Feature maps and Grad-CAM")
    exp = ui.current_experiment()
    runs = ui.pick_runs(exp, "fm")
    epochs = ui.epochs_or_stop(runs)
    c1, c2 = st.columns(2)
    with c1:
        epoch = ui.epoch_picker(epochs, "fm_epoch")
    model = cache.model(runs[0], epoch)
    convs = conv_layers(model)
    if not convs:
        st.info(
            f"{runs[0].model} has no convolutional layer, so there are no feature maps or "
            "Grad-CAM to show. Its first-layer weights, one 28×28 tile per hidden unit, are "
            "on the Weight statistics page."
        )
        st.page_link(
            ui.PAGES["weights"],
            label="First-layer view (Weight statistics)",
            icon=":material/grid_on:",
        )
        return
    size = input_spec(exp.info).image_size
    problem = dataset_problem(exp)
    with st.spinner("Checking which layers' Grad-CAM survives weight randomisation…"):
        verdicts, why = cache.layer_sanity(exp, runs, epoch)
    widest = cam_layer(model, size, MIN_SIDE)
    default = default_layer(verdicts, convs, widest) if verdicts else widest
    if verdicts and default is None:
        st.warning(
            f"No layer's Grad-CAM passes the randomisation sanity check for these models at "
            f"epoch {epoch}: read every map below as unverified."
        )
    layer = c2.selectbox(
        "Layer",
        convs,
        index=convs.index(default or widest),
        key="fm_layer",
        format_func=lambda name: f"{name}  {verdicts[name].text if name in verdicts else '?'}",
        help=f"Conv layers in forward order. The default is the deepest whose maps are still "
        f"at least {MIN_SIDE} pixels wide and whose Grad-CAM passes the cascading-randomisation "
        "sanity check for both models (✓; ✗ = fails, as on Training dynamics).",
    )
    o1, o2, o3 = st.columns(3)
    shared = o1.toggle(
        "One colour scale for both models",
        value=True,
        key="fm_shared",
        help="Off: each model's maps are scaled to their own range.",
    )
    negative = o2.toggle("Show negative Grad-CAM", value=False, key="fm_negative")
    top_k = int(o3.number_input("Top-k channels", 1, 32, 8, key="fm_topk"))
    picked = None
    left, right = st.columns([1, 4])
    with right, ui.guard("Image"):
        picked = choose_image(exp, problem)
    if picked is None:
        return
    image = np.asarray(picked.prepared.display.convert("RGB"))
    left.image(ui.upscale(image, 160), caption=f"Model input ({size}×{size}); {picked.caption}")
    input_warnings(exp, picked)
    sanity_note(verdicts.get(layer), layer, epoch, problem or why)
    with ui.guard("Feature maps"), st.spinner("Running both models…"):
        views = cache.explain(runs, epoch, layer, picked.prepared.tensor, picked.key, top_k)
        masks = picked.prepared.region_masks()
        render(runs, views, image, shared, negative, masks, picked.no_face, verdicts.get(layer))


main()

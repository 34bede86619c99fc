"""Feature maps: what L1 and L2 see in one face, at one epoch and layer, side by side."""

from __future__ import annotations

import hashlib
from dataclasses import astuple

import cache
import numpy as np
import streamlit as st
import ui

from fxcore.activations import conv_layers, map_ranges, overlay
from fxcore.align import ALIGN_METHODS
from fxcore.analysis import ModelView, cam_layer
from fxcore.faces import PreparedImage, prepare_upload
from fxcore.inputs import capabilities, input_spec
from fxcore.runs import Experiment, Run
from fxcore.stats import tile_grid

SOURCES = ("Sample from the dataset", "Upload a photo")
# Upload framing -> (crop_face, align) of fxcore.faces.prepare_upload.
FRAMINGS = {
    "Align like CelebA": (True, True),
    "Face crop": (True, False),
    "Centre crop": (False, False),
}


def choose_image(exp: Experiment) -> tuple[PreparedImage, str, str] | None:
    """The prepared input, a cache key for it, and a caption; None when there is none yet."""
    size, normalize, mode = astuple(input_spec(exp.info))
    cfg = exp.info.get("config", {})
    has_data = capabilities(exp.info).probe_images
    source = st.radio("Image", SOURCES if has_data else SOURCES[1:], horizontal=True, key="fm_src")
    if source == SOURCES[0]:
        n = len(cache.dataset(cfg, "val"))
        index = int(
            st.number_input(f"Validation image (0–{n - 1})", 0, max(0, n - 1), 0, key="fm_index")
        )
        s = cache.sample(cfg, index)
        labels = ", ".join(f"{k}={v:g}" for k, v in s.labels.items())
        return prepare_upload(s.image, size, normalize, mode=mode), f"val:{index}", labels
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
    return prepared, key, f"{upload.name}: {prepared.message}"


def tiles(view: ModelView, lo: float, hi: float) -> np.ndarray:
    grid = tile_grid(view.top_maps, cols=4, pad=1)
    rgb = ui.colourise(grid, lo, hi)
    side = view.top_maps.shape[-1]
    return ui.upscale(rgb, grid.shape[1] * max(1, 96 // side))


def region_shares(view: ModelView, masks: dict[str, np.ndarray]) -> str:
    """Grad-CAM share inside the upload's own eye/nose/mouth boxes (from its landmarks)."""
    from fxcore.similarity import localisation_shares

    cam = np.asarray(view.cam_positive, np.float64)
    if not masks or cam.shape != next(iter(masks.values())).shape:
        return ""
    shares = localisation_shares(np.clip(cam, 0, None)[None], masks)
    return "Grad-CAM share in this face's regions: " + " · ".join(
        f"{k} {v:.2f}" for k, v in shares.items() if v == v
    )


def render(
    runs: list[Run],
    views: list[ModelView],
    image: np.ndarray,
    shared: bool,
    negative: bool,
    masks: dict[str, np.ndarray] | None = None,
) -> None:
    cm = map_ranges([v.channel_mean for v in views], shared)
    top = map_ranges([v.top_maps for v in views], shared)
    pos = map_ranges([v.cam_positive for v in views], shared)
    neg = map_ranges([v.cam_negative for v in views], shared)
    for i, (col, run, view) in enumerate(zip(st.columns(len(views), gap="large"), runs, views)):
        with col:
            st.subheader(ui.run_label(i, run))
            st.metric(
                f"P({run.attribute})",
                f"{view.probability:.3f}",
                help=f"sigmoid of the logit {view.logit:+.3f}",
            )
            if masks and (text := region_shares(view, masks)):
                st.caption(text)
            pics = [
                (overlay(image, view.channel_mean, *cm[i]), "Channel-mean activation"),
                (
                    overlay(image, view.cam_positive, *pos[i]),
                    f"Grad-CAM: evidence for {run.attribute}",
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
                value_name="activation",
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
    default = cam_layer(model, size)
    layer = c2.selectbox(
        "Layer",
        convs,
        index=convs.index(default),
        key="fm_layer",
        help="Conv layers in forward order; the default is the deepest whose "
        "maps are still at least 8 pixels wide.",
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
        picked = choose_image(exp)
    if picked is None:
        return
    prepared, key, caption = picked
    image = np.asarray(prepared.display.convert("RGB"))
    left.image(ui.upscale(image, 160), caption=f"Model input ({size}×{size}); {caption}")
    with ui.guard("Feature maps"), st.spinner("Running both models…"):
        views = cache.explain(runs, epoch, layer, prepared.tensor, key, top_k)
        render(runs, views, image, shared, negative, prepared.region_masks())


main()

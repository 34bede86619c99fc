"""Alignment: similarity maths, known landmarks onto the CelebA template, the detector offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fxcore import align
from fxcore.align import EYE_TEMPLATE, FRAME, MEAN_LANDMARKS, apply, invert, similarity
from fxcore.faces import face_detector_available, prepare_upload

CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba-10k"


def rotation(deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    t = np.radians(deg)
    r = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.hstack([r, np.array(shift)[:, None]])


def test_similarity_recovers_a_known_transform() -> None:
    m = rotation(17.0, 1.7, (-40.0, 12.5))
    src = np.array([[10.0, 20.0], [80.0, 25.0], [40.0, 90.0], [5.0, 5.0]])
    np.testing.assert_allclose(similarity(src, apply(m, src)), m, atol=1e-9)
    np.testing.assert_allclose(apply(invert(m), apply(m, src)), src, atol=1e-9)
    with pytest.raises(ValueError, match="distinct"):
        similarity(np.ones((2, 2)), np.zeros((2, 2)))


def test_known_eye_landmarks_land_on_the_template_within_one_pixel() -> None:
    # A photo's landmarks: CelebA's template moved by a known rotation, scale and shift.
    photo = apply(rotation(-12.0, 2.3, (150.0, 40.0)), MEAN_LANDMARKS)
    m = similarity(photo[:2], EYE_TEMPLATE)
    assert np.abs(apply(m, photo[:2]) - EYE_TEMPLATE).max() < 1.0
    # All five landmarks follow the eyes onto the template (the template eyes are the measured
    # ones, 1 px from the published means, so the rest lands within 1.5 px).
    assert np.abs(apply(m, photo) - MEAN_LANDMARKS).max() < 1.5


def test_warp_puts_a_marked_pixel_where_the_transform_says() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    img[148:153, 248:253] = 255  # a white dot centred on (250, 150)
    m = rotation(10.0, 0.8, (-60.0, 20.0))
    out = np.asarray(align.warp_to_frame(Image.fromarray(img), m)).astype(float)[:, :, 0]
    assert out.shape == (FRAME[1], FRAME[0])
    ys, xs = np.nonzero(out > 60)
    centre = np.array([np.average(xs, weights=out[ys, xs]), np.average(ys, weights=out[ys, xs])])
    assert np.abs(centre - apply(m, [[250.0, 150.0]])[0]).max() < 1.0


def celeba_photo(name: str = "009001.jpg") -> Image.Image:
    if not (CELEBA / "img_align_celeba" / name).is_file():
        pytest.skip(f"CelebA-10k not found at {CELEBA} (shared data absent)")
    return Image.open(CELEBA / "img_align_celeba" / name).convert("RGB")


def test_detector_finds_eyes_offline_and_undoes_a_known_warp() -> None:
    if not face_detector_available():
        pytest.skip("the installed OpenCV has no Haar cascades (OpenCV 5); alignment is off")
    frame = celeba_photo().resize(FRAME, Image.BICUBIC)
    ref = prepare_upload(frame, 64, True, crop_face=True, align=True)
    assert ref.align_method == "eyes", ref.message
    # Rotate, scale and shift the aligned photo into a larger canvas: the landmarks found there,
    # mapped back through the known warp, must match those found on the original.
    m = rotation(8.0, 1.6, (60.0, 30.0))
    import cv2

    moved = Image.fromarray(cv2.warpAffine(np.asarray(frame), m, (420, 460),
                                           borderMode=cv2.BORDER_REPLICATE))  # fmt: skip
    got = prepare_upload(moved, 64, True, crop_face=True, align=True)
    assert got.align_method == "eyes", got.message
    back = apply(invert(m), got.landmarks_original)
    assert np.abs(back - ref.landmarks_original).max() < 6.0  # a few px of detector jitter
    assert got.landmarks.shape == (5, 2) and got.aligned.size == FRAME
    masks = got.region_masks()
    assert set(masks) == {"eyes", "nose", "mouth"} and masks["mouth"].shape == (64, 64)
    assert masks["mouth"][50:56].any() and not masks["mouth"][:30].any()

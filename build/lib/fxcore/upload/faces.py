"""Prepare an uploaded photo exactly as the training images were prepared.

:func:`load_image` turns untrusted bytes into an RGB image (size checked before decoding, EXIF
orientation applied, every colour mode converted) or raises :class:`ImageInputError` with a
message for the user. :func:`prepare_upload` then optionally crops around the largest face to the
CelebA framing and applies the training transform (:func:`fxcore.data.base.prepare_pil` +
:func:`fxcore.data.base.to_tensor`), so the model sees an upload the way it saw its training data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from fxcore.core.errors import FaceDetectorUnavailable, ImageInputError  # noqa: F401 - re-exported
from fxcore.data.base import prepare_pil, square_crop_box, to_tensor, transform_landmarks
from fxcore.data.celeba_files import box_mask, boxes_from_landmarks
from fxcore.upload.align import ALIGN_METHODS, CASCADE_LOCK, FRAME, align_face, apply, load_cascade

MIN_SIDE = 8  # smaller images carry no usable detail (and break pooling layers)
MAX_PIXELS = 40_000_000
# Formats a user may upload; others Pillow knows (EPS, PSD, ...) are refused to keep the decoder
# surface small. Filtered to what this Pillow build can open.
UPLOAD_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO", "PPM", "AVIF", "HEIF")

# CelebA framing, measured: on 764 aligned CelebA images (178x218) the Haar face box is square and
# the centred 178x178 square that training uses (prepare_pil) has a side of 1.70 box widths
# (quartiles 1.60..1.80) and a centre 0.14 box widths above the box centre (0.13..0.15),
# horizontally centred (|dx| < 0.02).
SIDE_FACTOR = 1.7
SHIFT_UP = 0.14
DETECT_MAX_SIDE = 320  # larger photos are downscaled for the cascade (speed: ~0.02 s CPU)
DETECT_MIN_SIDE = 256  # smaller ones are upscaled so a face exceeds the cascade's 24 px window
# Cascade search: a face must span >= 15% of the shorter side (background faces are ignored) and
# the scale pyramid steps by 15%; with the 320 px cap this costs ~0.02 s CPU per photo
# (benchmarks/bench_align.py), where 640 px / 8% / 10% cost ~0.1 s.
MIN_FACE_FRACTION = 0.15
SCALE_STEP = 1.15


def _upload_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in UPLOAD_FORMATS if f in Image.OPEN)


def _read_bytes(data: bytes | bytearray | memoryview | str | Path | BinaryIO) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, Path)):
        try:
            return Path(data).read_bytes()
        except OSError as e:
            raise ImageInputError(f"cannot read {str(data)!r}: {e.strerror or e}") from e
    if hasattr(data, "getvalue"):  # e.g. a Streamlit UploadedFile
        return bytes(data.getvalue())
    return bytes(data.read())


def _too_many_pixels(max_pixels: int) -> str:
    return (
        f"the image has too many pixels to open safely; the limit is {max_pixels / 1e6:.0f} "
        "megapixels: downscale it and upload it again"
    )


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageInputError(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); the "
            f"limit is {max_pixels / 1e6:.0f} megapixels: downscale it and upload it again"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageInputError(
            f"the image is only {width}x{height} pixels; it must be at least "
            f"{MIN_SIDE}x{MIN_SIDE} (a face photo should be a few hundred pixels)"
        )


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit L by scaling (Pillow's convert clips)."""
    arr = np.asarray(img)  # (H, W) uint16 / int32 / float32
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        shift, scale = 0.0, 1.0 / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F" and lo >= 0 and hi <= 1.0:
        shift, scale = 0.0, 255.0
    elif lo < 0 or hi > 255:  # unknown range: stretch what is there
        shift, scale = lo, (255.0 / (hi - lo) if hi > lo else 0.0)
    else:
        shift, scale = 0.0, 1.0
    out = np.empty(arr.shape, np.uint8)
    # float64 in blocks of rows: a whole 40-megapixel image as float64 would need > 1 GB.
    for r in range(0, arr.shape[0], 256):
        block = (arr[r : r + 256].astype(np.float64) - shift) * scale
        out[r : r + 256] = np.clip(np.rint(block), 0, 255)
    return Image.fromarray(out, "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparent pixels are composited on white."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _high_depth_to_l(img)
    elif img.mode == "1":
        img = img.convert("L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(
    data: bytes | bytearray | memoryview | str | Path | BinaryIO, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode an untrusted upload into an RGB image, or raise :class:`ImageInputError`.

    The pixel count is checked from the header before any decoding. Pillow's global
    ``Image.MAX_IMAGE_PIXELS`` is left alone (it is shared by every thread and session); its
    ``DecompressionBombError`` is mapped to :class:`ImageInputError` like every decode failure.
    Animated images give their first frame; EXIF orientation is applied.
    """
    raw = _read_bytes(data)
    if not raw:
        raise ImageInputError("the file is empty; upload a JPEG or PNG photo")
    formats = _upload_formats()
    try:
        img = Image.open(io.BytesIO(raw), formats=formats)
    except Image.DecompressionBombError as e:
        raise ImageInputError(_too_many_pixels(max_pixels)) from e
    except Exception as e:  # Pillow raises many types on hostile headers
        raise ImageInputError(
            f"this file is not an image that can be read ({', '.join(formats)} are accepted)"
        ) from e
    with img:
        _check_size(*img.size, max_pixels)
        try:
            img.seek(0)  # first frame of an animated GIF/WebP/APNG
            img.load()
        except Image.DecompressionBombError as e:
            raise ImageInputError(_too_many_pixels(max_pixels)) from e
        except Exception as e:  # truncated/corrupt data: OSError, SyntaxError, EOFError, ...
            raise ImageInputError(
                f"the {img.format or 'image'} file is damaged or incomplete and cannot be "
                f"decoded ({type(e).__name__}); save it again and re-upload"
            ) from e
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # malformed EXIF must not reject a decodable photo
            oriented = img
        try:
            rgb = _to_rgb(oriented)
        except Exception as e:
            raise ImageInputError(f"unsupported colour mode {img.mode!r}; save as RGB") from e
    _check_size(*rgb.size, max_pixels)
    return rgb


FACE_CASCADE = "haarcascade_frontalface_default.xml"


def _cascade() -> Any:
    return load_cascade(FACE_CASCADE)


def face_detector_available() -> bool:
    """Whether :func:`detect_face` can run with the installed OpenCV."""
    try:
        with CASCADE_LOCK:
            _cascade()
    except FaceDetectorUnavailable:
        return False
    return True


def detect_face(img: Image.Image) -> tuple[int, int, int, int] | None:
    """Box ``(left, top, right, bottom)`` of the largest frontal face in ``img``, or None.

    Uses OpenCV's bundled Haar cascade on a grayscale, histogram-equalised copy whose longer
    side is brought into [DETECT_MIN_SIDE, DETECT_MAX_SIDE] pixels. Raises :class:`FaceDetectorUnavailable` when OpenCV
    lacks the cascade.
    """
    import cv2

    w, h = img.size
    longest = max(w, h)
    scale = (
        min(1.0, DETECT_MAX_SIDE / longest)
        if longest > DETECT_MIN_SIDE
        else (DETECT_MIN_SIDE / longest)
    )
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    gray = np.ascontiguousarray(img.convert("L").resize(size, Image.BILINEAR))  # (h', w') uint8
    gray = cv2.equalizeHist(gray)
    min_face = max(24, int(MIN_FACE_FRACTION * min(size)))  # ignore tiny faces in the background
    with CASCADE_LOCK:
        faces = _cascade().detectMultiScale(
            gray, scaleFactor=SCALE_STEP, minNeighbors=5, minSize=(min_face, min_face)
        )
    if len(faces) == 0:
        return None
    x, y, fw, fh = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    left, top = max(0, round(x / scale)), max(0, round(y / scale))
    right, bottom = min(w, round((x + fw) / scale)), min(h, round((y + fh) / scale))
    return left, top, right, bottom


def training_crop_box(
    size: tuple[int, int], box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """Square crop ``(left, top, right, bottom)`` framing a face box the way training images are.

    Side = ``SIDE_FACTOR`` x box width, centre = box centre moved up by ``SHIFT_UP`` box widths
    (measured on CelebA, see the constants). The square is shifted to lie inside the image and
    shrunk to the image's shorter side when it does not fit (the face is then framed tighter).
    """
    w, h = size
    left, top, right, bottom = box
    bw = max(1, right - left)
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0 - SHIFT_UP * bw
    side = int(round(min(SIDE_FACTOR * bw, w, h)))
    x0 = int(round(min(max(cx - side / 2.0, 0.0), w - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0.0), h - side)))
    return x0, y0, x0 + side, y0 + side


def crop_to_training_framing(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """Crop ``img`` to the square of :func:`training_crop_box` around the face ``box``."""
    return img.crop(training_crop_box(img.size, box))


@dataclass
class PreparedImage:
    """An upload as the model sees it."""

    display: Image.Image  # at image_size: the exact pixels fed to the model
    tensor: torch.Tensor  # (1, C, S, S) float32, normalised like training
    face_box: tuple[int, int, int, int] | None  # in the original (EXIF-rotated) image
    cropped: bool  # True when the face framing was used
    message: str  # what was done, for the user
    original_size: tuple[int, int]  # (width, height) after EXIF rotation
    crop_box: tuple[int, int, int, int]  # region of the original that became ``display``
    # (when aligned: the face-crop square around the face, an approximation of the warped frame)
    # Alignment (``align=True``, fxcore/upload/align.py): the aligned 178x218 frame, the (5, 2) landmarks
    # (LANDMARK_NAMES order) in the original photo and in ``display``, and how they were found.
    aligned: Image.Image | None = None
    landmarks_original: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    align_method: str | None = None
    align_matrix: np.ndarray | None = None  # (2, 3): original pixels -> the aligned frame

    def region_masks(self) -> dict[str, np.ndarray]:
        """Eye/nose/mouth boxes of this upload in ``display`` pixels (empty without landmarks)."""
        if self.landmarks is None:
            return {}
        side = self.display.width
        return {k: box_mask(b, side) for k, b in boxes_from_landmarks(self.landmarks).items()}


def prepare_upload(
    data: bytes | bytearray | memoryview | str | Path | BinaryIO | Image.Image,
    image_size: int,
    normalize: bool,
    crop_face: bool = False,
    mode: str = "RGB",
    max_pixels: int = MAX_PIXELS,
    align: bool = False,
) -> PreparedImage:
    """Load an upload (or take a PIL image) and apply the training transform.

    With ``crop_face`` the largest face is framed like CelebA first; with ``align`` too it is
    warped into CelebA's aligned frame by a similarity transform from its five landmarks
    (:mod:`fxcore.upload.align`; ``align`` alone uses the landmark detector only). Without a face (or
    without a detector) the centre crop that training uses is kept and ``message`` says so.
    """
    img = _to_rgb(data) if isinstance(data, Image.Image) else load_image(data, max_pixels)
    face_box = None
    crop = square_crop_box(*img.size)
    message = "centre crop, as in training"
    gray = np.asarray(img.convert("L")) if align else None
    # Alignment tries the landmark detector on the whole photo first; the Haar face box is only
    # searched when that finds nothing (or for the plain face crop), and then serves as its hint.
    found = align_face(img, gray, None) if align else None
    if crop_face and found is None:
        try:
            face_box = detect_face(img)
        except FaceDetectorUnavailable as e:
            message = f"face detection unavailable ({e}); using the centre crop"
        else:
            if face_box is None:
                message = "no face found; using the centre crop"
            else:
                crop = training_crop_box(img.size, face_box)
                message = "face found; cropped to the CelebA training framing"
                if align:  # dlib's search missed: its predictor in the Haar box, then Haar eyes
                    found = align_face(img, gray, face_box, search=False)
    if found is not None:
        if face_box is None:  # the landmark detector found the face: its box, clamped to the photo
            face_box = found.box
            crop = training_crop_box(img.size, face_box)
        message = f"face found; aligned like CelebA from {ALIGN_METHODS[found.method]}"
        display = prepare_pil(found.image, image_size, mode)
        lm = transform_landmarks(apply(found.matrix, found.landmarks), *FRAME, image_size)
    else:
        display = prepare_pil(img.crop(crop) if face_box else img, image_size, mode)
        lm = None
    tensor = to_tensor(display, normalize)[None]  # (1, C, S, S)
    return PreparedImage(
        display=display,
        tensor=tensor,
        face_box=face_box,
        cropped=face_box is not None,
        message=message,
        original_size=img.size,
        crop_box=crop,
        aligned=found.image if found else None,
        landmarks_original=found.landmarks if found else None,
        landmarks=lm,
        align_method=found.method if found else None,
        align_matrix=found.matrix if found else None,
    )

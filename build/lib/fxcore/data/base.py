"""One dataset interface for CelebA, SynthFaces and MNIST.

Every dataset yields ``(image, labels)``: ``image`` is a float32 tensor ``(C, H, W)`` already resized
and normalised exactly as the model expects, ``labels`` is a float32 tensor ``(K,)`` holding one value
per chosen attribute (0/1 for binary attributes, the class index for multi-class ones such as MNIST's
``digit``). Uploads are prepared with the same :func:`prepare_pil` and :func:`to_tensor`
(:mod:`fxcore.upload.faces`), so a face photo is fed to a model exactly as the training images were.
The sources (CelebA, SynthFaces, MNIST) subclass :class:`FxDataset`; :mod:`fxcore.data.registry` opens
them by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from fxcore.core.errors import DataError  # noqa: F401 - re-exported

# ImageNet statistics: used whenever a model starts from ImageNet weights (and by default for faces,
# so a scratch model and a pretrained one see the same input scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Landmark order shared by CelebA and SynthFaces (CelebA's list_landmarks_align_celeba.txt order).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
# Face regions every face source draws masks for (CelebA from landmarks, SynthFaces from geometry).
REGIONS = ("mouth", "eyes", "nose")


@dataclass
class Sample:
    """Display-side view of one item: the prepared image plus what analysis needs."""

    image: Image.Image  # RGB (or L for MNIST) at the model's input size, not normalised
    labels: dict[str, float]
    landmarks: np.ndarray | None = (
        None  # (5, 2) float x,y pixels in ``image``, LANDMARK_NAMES order
    )
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # region name -> (H, W) bool


def square_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Centred square crop box (left, top, right, bottom) of the largest square in the image."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def prepare_pil(img: Image.Image, image_size: int, mode: str = "RGB") -> Image.Image:
    """Centre-crop to a square and resize to ``image_size`` (the framing used for training)."""
    img = img.convert(mode)
    box = square_crop_box(*img.size)
    return img.crop(box).resize((image_size, image_size), Image.BILINEAR)


def transform_landmarks(points: np.ndarray, width: int, height: int, image_size: int) -> np.ndarray:
    """Map (5, 2) landmark pixels from the original image to the prepared square image."""
    left, top, right, _ = square_crop_box(width, height)
    scale = image_size / float(right - left)
    out = (np.asarray(points, dtype=np.float32) - np.array([left, top], np.float32)) * scale
    return out


def to_tensor(img: Image.Image, normalize: bool) -> torch.Tensor:
    """PIL image -> float32 ``(C, H, W)`` in [0, 1], then ImageNet-normalised if asked (RGB only)."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:  # (H, W) grayscale -> (1, H, W)
        arr = arr[None]
    else:  # (H, W, C) -> (C, H, W)
        arr = arr.transpose(2, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if normalize and x.shape[0] == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        x = (x - mean) / std
    return x


def uint8_to_input(batch: torch.Tensor, normalize: bool) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 model input, same maths as :func:`to_tensor`."""
    x = batch.float().div_(255.0)
    if normalize and x.shape[1] == 3:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


class FxDataset(torch.utils.data.Dataset):
    """Base class of the three sources. Subclasses fill the attributes and implement the methods.

    ``images_uint8()`` gives the whole split as a uint8 tensor ``(N, C, S, S)`` (decoded once, cached
    by the subclass), which the lockstep trainer uses so every model sees the same decoded batch.
    """

    name: str = "base"
    show_progress: bool = True  # decode bar for large splits (the trainer passes --no-progress)
    attributes: list[str]  # chosen attributes, canonical spelling, label order
    all_attributes: list[str]  # every attribute the source knows
    num_classes: dict[str, int]  # 2 for binary attributes, e.g. 10 for MNIST's digit
    image_size: int
    normalize: bool
    channels: int = 3

    def __len__(self) -> int:
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """All labels ``(N, K)`` float32 without decoding any image."""
        raise NotImplementedError

    def get_uint8(self, index: int) -> torch.Tensor:
        """One prepared image ``(C, S, S)`` uint8 (decoded now; safe in DataLoader workers)."""
        raise NotImplementedError

    def images_uint8(self) -> torch.Tensor:
        """All prepared images ``(N, C, S, S)`` uint8, decoded once and cached on the instance.

        Subclasses may override with something faster; the trainer only calls it when
        :meth:`nbytes_uint8` fits its memory budget, and streams :meth:`get_uint8` otherwise.
        """
        cached = getattr(self, "_uint8_cache", None)
        if cached is None:
            from tqdm.auto import tqdm

            n = len(self)
            cached = torch.empty(
                (n, self.channels, self.image_size, self.image_size), dtype=torch.uint8
            )
            for i in tqdm(
                range(n),
                desc=f"decode {self.name}",
                unit="img",
                disable=n < 2000 or not self.show_progress,
            ):
                cached[i] = self.get_uint8(i)
            self._uint8_cache = cached
        return cached

    def nbytes_uint8(self) -> int:
        """Bytes that :meth:`images_uint8` would hold."""
        return len(self) * self.channels * self.image_size * self.image_size

    def sample(self, index: int) -> Sample:
        """Prepared image, labels, landmarks and region masks of one item, for display/analysis."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Short hash that changes when the data or its preparation changes."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        cached = getattr(self, "_uint8_cache", None)
        img = cached[index] if cached is not None else self.get_uint8(index)
        x = uint8_to_input(img[None], self.normalize)[0]
        return x, torch.from_numpy(self.labels()[index])


def label_statistics(labels: np.ndarray) -> dict[str, Any]:
    """Positive rate of each binary label column and their co-occurrence.

    ``cooccurrence[a, b] = P(a=1, b=1)``; ``conditional[a, b] = P(b=1 | a=1)`` (NaN if a is
    never 1); ``phi[a, b]`` is the correlation of the two 0/1 columns (NaN for a constant one).
    """
    x = (np.asarray(labels) > 0).astype(np.float64)  # (N, K)
    rate = x.mean(0) if len(x) else np.full(x.shape[1], np.nan)
    co = x.T @ x / max(1, len(x))
    spread = np.sqrt(rate * (1 - rate))
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.where(rate[:, None] > 0, co / rate[:, None], np.nan)
        den = spread[:, None] * spread[None, :]
        phi = np.where(den > 0, (co - rate[:, None] * rate[None, :]) / den, np.nan)
    return {
        "positive_rate": rate,
        "cooccurrence": co,
        "conditional": cond,
        "phi": phi,
        "num_rows": len(x),
    }


def fingerprint_of(*parts: Any) -> str:
    """Stable 16-hex-digit hash of JSON-able parts (ndarrays hashed by bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]

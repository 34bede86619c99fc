"""Batch augmentation for the lockstep trainer (``--augment``), with torchvision transforms v2.

The trainer draws ONE augmented batch per step from the shared uint8 batch and feeds that same tensor
to every model of the lockstep, so the K runs still see identical pixels. The random draws come from
a private generator state seeded with ``(seed, epoch, step, rank)`` (``torch.random.fork_rng``), so

* the augmentation of a batch does not depend on the models, the dropout draws or the device, and
* ``--resume`` from epoch E replays epochs E+1.. bit-identically, as an uninterrupted run would.

Each image of a batch gets its own parameters (a random resized crop with scale and aspect jitter, a
small rotation/translation/zoom, a horizontal flip and colour jitter), all on uint8 tensors.
``auto`` turns it on for the face datasets (CelebA, SynthFaces) and off for MNIST, where a flip or a
crop changes what a digit is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from fxcore.train.config import resolve_augment  # noqa: F401 - re-exported


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation recipe (one place; ``docs/celeba.md`` reports its effect)."""

    crop_scale: tuple[float, float] = (0.70, 1.0)  # RandomResizedCrop area fraction
    crop_ratio: tuple[float, float] = (0.85, 1.18)  # RandomResizedCrop aspect jitter
    degrees: float = 12.0  # RandomAffine rotation, either way
    translate: float = 0.08  # RandomAffine shift, fraction of the side
    zoom: tuple[float, float] = (0.85, 1.15)  # RandomAffine scale (zoom out leaves a border)
    flip: float = 0.5  # horizontal flip probability
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.02


def build_transform(size: int, channels: int = 3, cfg: AugmentConfig | None = None) -> v2.Compose:
    """The per-image transform (uint8 ``(C, size, size)`` in and out)."""
    cfg = cfg or AugmentConfig()
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomAffine(
            degrees=cfg.degrees,
            translate=(cfg.translate, cfg.translate),
            scale=cfg.zoom,
            interpolation=v2.InterpolationMode.BILINEAR,
        ),
        v2.RandomHorizontalFlip(cfg.flip),
    ]
    if channels == 3:
        steps.append(v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
    return v2.Compose(steps)


def batch_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The generator seed of one batch's augmentation (distinct per seed, epoch, step and rank)."""
    return ((seed * 100_003 + epoch) * 1_000_003 + step) * 131 + rank


class BatchAugmenter:
    """Augments a whole uint8 batch once; the trainer shares the result across the lockstep."""

    def __init__(self, size: int, channels: int = 3, cfg: AugmentConfig | None = None) -> None:
        self.transform = build_transform(size, channels, cfg)

    def __call__(
        self, batch: torch.Tensor, seed: int, epoch: int, step: int, rank: int = 0
    ) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.dim() != 4:
            raise ValueError(
                f"expected a uint8 (B, C, H, W) batch, got {batch.dtype} {tuple(batch.shape)}"
            )
        # Per-image ops are tiny: one thread (a busy machine measured 0.3 s instead of 8 s per
        # batch of 32 at 64 px with 2 threads); the pixels do not depend on the thread count.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(batch_seed(seed, epoch, step, rank))
                out = torch.stack([self.transform(img) for img in batch])
        finally:
            torch.set_num_threads(threads)
        return out.contiguous()

"""SynthFaces: procedural cartoon faces whose attribute cues sit in known regions (offline default).

Item ``i`` of a split comes from row ``i`` of ``U = default_rng([seed, split_id, SALT]).random((N,
P))``; numpy fills U row by row, so an item depends only on (seed, split, i) and truncating a
split keeps its first items. Rendering, landmarks and region masks: :mod:`fxcore.data.facerender`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from fxcore.data.base import LANDMARK_NAMES, DataError, FxDataset, Sample, fingerprint_of
from fxcore.data.facerender import (
    ATTRIBUTES,
    COLS,
    REGIONS,
    derive,
    face_grid,
    pose_xy,
    region,
    render,
)

VERSION = 2  # bump whenever the pixels change (part of the data fingerprint)
_SALT = 0x5F17
SPLIT_SIZES = {"train": 4000, "val": 1000, "test": 1000}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _canonical(name: str, valid: Sequence[str]) -> str:
    """Case-insensitive lookup ('smiling', 'rosy cheeks' -> 'Smiling', 'Rosy_Cheeks')."""
    table = {x.lower(): x for x in valid}
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    if key not in table:
        raise DataError(f"unknown SynthFaces name {name!r}; valid names: {', '.join(valid)}")
    return table[key]


class SynthFaces(FxDataset):
    """Procedural faces; labels, landmarks and region masks are exact by construction."""

    name = "synthfaces"

    def __init__(
        self,
        split: str = "train",
        attributes: Sequence[str] = ("Smiling", "Male"),
        image_size: int = 64,
        normalize: bool = True,
        seed: int = 0,
        max_samples: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        if split not in SPLIT_SIZES:
            raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SIZES)}")
        if not attributes:
            raise DataError(f"choose at least one attribute from {', '.join(ATTRIBUTES)}")
        self.split, self.seed = split, int(seed)
        if self.seed < 0:
            raise DataError(f"seed must be a non-negative integer, got {seed}")
        self.all_attributes = list(ATTRIBUTES)
        self.attributes = [_canonical(a, ATTRIBUTES) for a in attributes]
        if len(set(self.attributes)) != len(self.attributes):
            raise DataError(f"attributes {list(attributes)} name one attribute twice")
        self.num_classes = {a: 2 for a in self.attributes}
        self.image_size, self.normalize = int(image_size), bool(normalize)
        n = SPLIT_SIZES[split] if num_samples is None else int(num_samples)
        n = max(0, n if max_samples is None else min(n, int(max_samples)))
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[split], _SALT])  # one stream per split
        self._u = rng.random((n, len(COLS)))  # (N, P), filled row by row
        self._p = derive(self._u)
        self._labels = np.stack([self._p[a] for a in self.attributes], 1)  # (N, K) float32

    def __len__(self) -> int:
        return len(self._labels)

    def labels(self) -> np.ndarray:
        """Labels (N, K) float32 0/1 in ``self.attributes`` order."""
        return self._labels

    def _idx(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Validated item indices (negative ones count from the end) as int64 (B,)."""
        idx, n = np.asarray(indices, dtype=np.int64).reshape(-1), len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for {n} SynthFaces items")
        return idx % max(n, 1)

    def render(
        self, indices: Sequence[int] | np.ndarray, overrides: dict[str, float] | None = None
    ) -> np.ndarray:
        """Render items -> uint8 (B, 3, S, S), bypassing the cache.

        ``overrides`` ({attribute: 0 or 1}) renders counterfactuals: the same faces with those
        attributes forced and every other parameter (pose, colours, noise) unchanged.
        """
        idx = self._idx(indices)
        if not overrides:
            return render({k: x[idx] for k, x in self._p.items()}, self.image_size)
        u = self._u[idx].copy()  # (B, P)
        for name, value in overrides.items():
            u[:, COLS.index(_canonical(name, ATTRIBUTES))] = 0.25 if value else 0.75
        return render(derive(u), self.image_size)

    def get_uint8(self, index: int) -> torch.Tensor:
        """One image (3, S, S) uint8, bit-identical to ``images_uint8()[index]``."""
        cached = getattr(self, "_uint8_cache", None)
        if cached is not None:
            return cached[int(self._idx([index])[0])]
        return torch.from_numpy(self.render([index])[0])

    def images_uint8(self) -> torch.Tensor:
        """The whole split (N, 3, S, S) uint8, rendered in batches once and cached."""
        if getattr(self, "_uint8_cache", None) is None:
            n, s = len(self), self.image_size
            out = np.empty((n, 3, s, s), np.uint8)
            b = max(1, 65536 // (s * s))  # ~256 KiB float32 temporaries stay in cache (16 at 64)
            for i in range(0, n, b):
                out[i : i + b] = self.render(np.arange(i, min(i + b, n)))
            self._uint8_cache = torch.from_numpy(out)
        return self._uint8_cache

    def landmarks_array(self) -> np.ndarray:
        """(N, 5, 2) float32 pixel x, y in LANDMARK_NAMES order (pixel centres at integers)."""
        p, z = self._p, np.zeros_like(self._p["ex"])
        mouth_v = p["my"] - 0.02 * p["Smiling"]  # smiles lift the corners
        fu = np.stack([-p["ex"], p["ex"], z, -p["mw"], p["mw"]], 1)  # (N, 5) face coords
        fv = np.stack([p["ey"], p["ey"], z + 0.13, mouth_v, mouth_v], 1)
        return pose_xy(p, fu, fv, self.image_size).astype(np.float32)

    region_names = list(ATTRIBUTES + REGIONS)  # what region_masks knows: attributes + generic

    def region_masks(
        self, indices: Sequence[int] | np.ndarray, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Ground-truth masks {name: bool (len(indices), S, S)} (default: all region names)."""
        names = [_canonical(x, self.region_names) for x in (names or self.region_names)]
        idx = self._idx(indices)
        p = {k: x[idx] for k, x in self._p.items()}
        u, v, _ = face_grid(p, self.image_size)
        return {x: region(x, p, u, v) for x in names}

    def sample(self, index: int) -> Sample:
        """PIL image, labels of every attribute, landmarks (5, 2) and every region mask."""
        i = int(self._idx([index])[0])
        img = Image.fromarray(self.get_uint8(i).permute(1, 2, 0).numpy(), "RGB")
        labels = {a: float(self._p[a][i]) for a in self.all_attributes}
        masks = {k: m[0] for k, m in self.region_masks([i]).items()}
        return Sample(img, labels, self.landmarks_array()[i], masks)

    def fingerprint(self) -> str:
        """Hash of everything that determines the images and labels."""
        return fingerprint_of(
            self.name, VERSION, self.seed, self.split, len(self), self.image_size, self.attributes
        )


def synthfaces_grid(
    out_path: str | Path, rows: int = 4, cols: int = 4, image_size: int = 128, seed: int = 0
) -> Path:
    """Write a PNG grid of training samples, each with its 5 landmarks and a '+/-' label line."""
    ds = SynthFaces("train", list(ATTRIBUTES), image_size, False, seed, max_samples=rows * cols)
    imgs, marks = ds.render(range(len(ds))), ds.landmarks_array()  # (B, 3, S, S), (B, 5, 2)
    short = {a: "".join(w[0] for w in a.split("_")) for a in ATTRIBUTES}  # Eyes_Open -> EO
    s, pad, per_line = image_size, 4, max(1, image_size // 24)  # ~24 px per "EO+ " token
    text_h = 12 * -(-len(ATTRIBUTES) // per_line) + 2  # wrap the labels on small tiles
    grid = Image.new("RGB", (cols * (s + pad) + pad, rows * (s + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    dot = {"eye": (255, 0, 0), "nose": (0, 200, 0), "mouth": (0, 80, 255)}
    for k in range(len(ds)):
        x0, y0 = pad + (k % cols) * (s + pad), pad + (k // cols) * (s + text_h + pad)
        grid.paste(Image.fromarray(imgs[k].transpose(1, 2, 0), "RGB"), (x0, y0))
        for (x, y), name in zip(marks[k], LANDMARK_NAMES):  # x, y: pixel centres in the tile
            box = (x0 + x - 1.5, y0 + y - 1.5, x0 + x + 1.5, y0 + y + 1.5)
            draw.ellipse(box, fill=dot[name.split("_")[-1]])
        tags = [short[a] + ("+" if v else "-") for a, v in zip(ATTRIBUTES, ds.labels()[k])]
        for j in range(0, len(tags), per_line):
            draw.text(
                (x0, y0 + s + 1 + 12 * (j // per_line)), " ".join(tags[j : j + per_line]), "black"
            )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


__all__ = ["ATTRIBUTES", "REGIONS", "SynthFaces", "synthfaces_grid"]

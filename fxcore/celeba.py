"""CelebA from its official folder layout (full set or any subset of the aligned images).

Layout read: ``ROOT/img_align_celeba/*.jpg``, ``ROOT/list_attr_celeba.txt``,
``ROOT/list_eval_partition.txt`` and optionally ``ROOT/list_landmarks_align_celeba.txt``;
torchvision's ``ROOT/celeba/...`` nesting works too. Rows whose image is absent are skipped (so a
subset of the images just works), malformed rows are skipped and counted: no traceback either way.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fxcore.data import (
    DataError,
    FxDataset,
    Sample,
    fingerprint_of,
    prepare_pil,
    transform_landmarks,
)

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
IMAGE_DIR = "img_align_celeba"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
REGIONS = ("mouth", "eyes", "nose")
# The official aligned images are 178x218; landmark files refer to that frame.
OFFICIAL_SIZE = (178, 218)
# Mean aligned landmarks (x, y) over CelebA in the 178x218 frame, LANDMARK_NAMES order. They give
# the fixed region boxes used when no landmark file is present (scaled to the size on disk).
MEAN_LANDMARKS = np.array(
    [[69, 111], [108, 111], [88, 134], [72, 152], [105, 152]], dtype=np.float32
)
HOW_TO_GET = (
    "Expected ROOT/img_align_celeba/*.jpg, ROOT/list_attr_celeba.txt and "
    "ROOT/list_eval_partition.txt (optionally ROOT/list_landmarks_align_celeba.txt; "
    "ROOT/celeba/... also works). Get them from the official page "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html ('Align&Cropped Images' plus the 'Anno' "
    "and 'Eval' folders), or pass --download to let torchvision fetch them."
)
# One attribute row: file name then exactly 40 values of -1/1 (fast path; other rows parsed slowly).
_ROW = re.compile(r"(\S+)((?:[ \t]+-?1){40})[ \t]*")


@dataclass
class _Table:
    """Every well-formed row whose image is present, in file order."""

    image_dir: Path
    names: list[str]
    files: list[str]
    attrs: np.ndarray  # (M, 40) int8 in {-1, 1}
    partition: np.ndarray  # (M,) int8: 0 train, 1 val, 2 test
    landmarks: np.ndarray | None  # (M, 5, 2) float32 in the 178x218 frame, NaN where missing
    skipped_missing: int
    skipped_malformed: int
    missing_example: str


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()  # handles CRLF


def find_base(root: str | Path) -> Path:
    """The folder holding the CelebA list files: ``root`` or ``root/celeba``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"CelebA root {root} does not exist. {HOW_TO_GET}")
    bases = [root, root / "celeba"] + ([root.parent] if root.name == IMAGE_DIR else [])
    for base in bases:
        if (base / ATTR_FILE).is_file():
            for need in (PARTITION_FILE, IMAGE_DIR):
                if not (base / need).exists():
                    raise DataError(f"CelebA: {base / need} is missing. {HOW_TO_GET}")
            return base
    hint = (
        " (found Kaggle-style .csv files; use the official .txt files)"
        if list(root.glob("*.csv"))
        else ""
    )
    raise DataError(f"CelebA: {root / ATTR_FILE} not found{hint}. {HOW_TO_GET}")


def _parse_attrs(path: Path) -> tuple[list[str], list[str], np.ndarray, int]:
    lines = _lines(path)
    names = lines[1].split() if len(lines) > 1 else []
    if len(names) != 40:
        raise DataError(f"{path}: line 2 must list the 40 attribute names, found {len(names)}")
    files: list[str] = []
    rests: list[str] = []
    bad = 0
    for line in lines[2:]:
        m = _ROW.fullmatch(line)
        if m:
            files.append(m.group(1))
            rests.append(m.group(2))
        elif line.strip():
            parts = line.split()
            try:  # tolerate spellings such as "+1" or "01"
                vals = [int(v) for v in parts[1:]]
            except ValueError:
                vals = []
            if len(vals) == 40 and all(v in (-1, 1) for v in vals):
                files.append(parts[0])
                rests.append(" " + " ".join(map(str, vals)))
            else:
                bad += 1
    if not files:
        raise DataError(f"{path}: no well-formed rows ('NNNNNN.jpg' then 40 values of -1/1)")
    attrs = np.fromstring(" ".join(rests), dtype=np.int8, sep=" ").reshape(-1, 40)
    return names, files, attrs, bad


def _parse_keyed(path: Path, width: int, skip: int) -> tuple[dict[str, list[int]], int]:
    """``file v1 .. v_width`` rows as a dict; returns the count of malformed rows too."""
    out: dict[str, list[int]] = {}
    bad = 0
    for line in _lines(path)[skip:]:
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            vals = []
        if len(vals) == width:
            out[parts[0]] = vals
        else:
            bad += 1
    return out, bad


def _stamp(base: Path) -> tuple:
    paths = [base / f for f in (ATTR_FILE, PARTITION_FILE, LANDMARK_FILE, IMAGE_DIR)]
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in paths)


def read_table(root: str | Path) -> _Table:
    """Parse the list files under ``root`` (cached while the files are unchanged)."""
    base = find_base(root)
    return _read_table(base.resolve(), _stamp(base))


@lru_cache(maxsize=2)
def _read_table(base: Path, _stamp: tuple) -> _Table:
    names, files, attrs, bad = _parse_attrs(base / ATTR_FILE)
    part, bad_p = _parse_keyed(base / PARTITION_FILE, 1, 0)
    image_dir = base / IMAGE_DIR
    if (image_dir / IMAGE_DIR).is_dir():  # Kaggle's img_align_celeba/img_align_celeba/
        image_dir = image_dir / IMAGE_DIR
    present = set(os.listdir(image_dir))
    keep, missing = [], []
    for i, f in enumerate(files):
        if f not in present:
            missing.append(f)
        elif part.get(f, [-1])[0] in (0, 1, 2):
            keep.append(i)
        else:  # no (valid) partition row
            bad += 1
    if not keep:
        raise DataError(
            f"CelebA: none of the {len(files)} images listed in {base / ATTR_FILE} is in "
            f"{image_dir} (with a partition row). {HOW_TO_GET}"
        )
    kept = [files[i] for i in keep]
    landmarks = None
    if (base / LANDMARK_FILE).is_file():
        lm, bad_l = _parse_keyed(base / LANDMARK_FILE, 10, 2)
        bad += bad_l
        nan = [float("nan")] * 10
        landmarks = np.array([lm.get(f, nan) for f in kept], np.float32).reshape(-1, 5, 2)
    return _Table(
        image_dir=image_dir,
        names=names,
        files=kept,
        attrs=attrs[keep],
        partition=np.array([part[f][0] for f in kept], np.int8),
        landmarks=landmarks,
        skipped_missing=len(missing),
        skipped_malformed=bad + bad_p,
        missing_example=missing[0] if missing else "",
    )


def boxes_from_landmarks(lm: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """Region boxes (x0, y0, x1, y1) from (5, 2) landmarks, sized by the inter-ocular distance."""
    le, re_, nose, lmo, rmo = (np.asarray(p, np.float64) for p in lm)
    d = float(np.hypot(*(re_ - le))) or 1.0
    eye_y = (le[1] + re_[1]) / 2
    mouth_y = (lmo[1] + rmo[1]) / 2
    return {
        "eyes": (le[0] - 0.45 * d, eye_y - 0.3 * d, re_[0] + 0.45 * d, eye_y + 0.3 * d),
        "nose": (nose[0] - 0.3 * d, eye_y + 0.2 * d, nose[0] + 0.3 * d, nose[1] + 0.2 * d),
        "mouth": (lmo[0] - 0.2 * d, mouth_y - 0.25 * d, rmo[0] + 0.2 * d, mouth_y + 0.3 * d),
    }


def box_mask(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(size, size) bool mask of the pixels whose centre lies inside ``box``."""
    c = np.arange(size) + 0.5
    cols = (c >= box[0]) & (c < box[2])
    rows = (c >= box[1]) & (c < box[3])
    return rows[:, None] & cols[None, :]


def attribute_statistics(root: str | Path) -> dict[str, object]:
    """Positive rate of all 40 attributes and their co-occurrence over every present row.

    ``cooccurrence[a, b] = P(a=1, b=1)``; ``conditional[a, b] = P(b=1 | a=1)`` (NaN if a is
    never 1). This is the seed paper's Fig. 2.1.
    """
    t = read_table(root)
    x = (t.attrs > 0).astype(np.float64)  # (M, 40)
    rate = x.mean(0)
    co = x.T @ x / len(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.where(rate[:, None] > 0, co / rate[:, None], np.nan)
    return {"names": list(t.names), "positive_rate": rate, "cooccurrence": co,
            "conditional": cond, "num_rows": len(x)}  # fmt: skip


class CelebA(FxDataset):
    """One split of CelebA with K chosen binary attributes (labels 0/1 from the file's -1/1).

    Splits follow ``list_eval_partition.txt``. When the official val or test split has no image
    present (the usual subsets hold train images only), it is carved from the present train rows:
    ``np.random.default_rng(seed)`` permutes them, ``val`` takes the first ``val_fraction``,
    ``test`` the next ``val_fraction`` and ``train`` the rest, so the three stay disjoint
    (``self.carved``). ``max_samples`` then keeps the first N rows of the split.

    Undecodable JPEGs: :meth:`get_uint8` raises :class:`DataError` naming the file, while
    :meth:`images_uint8` drops them (with one warning) and shrinks the labels to match, so call it
    before :meth:`labels` when training from the cache. Region masks come from the landmark file
    when present, else from boxes around CelebA's mean aligned landmarks (``MEAN_LANDMARKS``).
    """

    name = "celeba"
    channels = 3
    SPLITS = ("train", "val", "test")
    # Pillow releases the GIL in JPEG decode and resize, so threads can overlap; on the busy
    # 2-core dev box 1 and 2 threads measured the same (~0.3 ms per image), so 2 costs nothing.
    decode_workers = 2

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        attributes: list[str] | None = None,
        image_size: int = 64,
        normalize: bool = True,
        seed: int = 0,
        max_samples: int | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
    ) -> None:
        if split not in SPLIT_CODES:
            raise DataError(f"CelebA split {split!r} unknown; use train, val or test")
        if not 0 <= val_fraction < 0.5:
            raise DataError(f"val_fraction must be in [0, 0.5), got {val_fraction}")
        root = Path(root).expanduser()
        if download and not any((b / ATTR_FILE).is_file() for b in (root, root / "celeba")):
            _download(root)
        t = read_table(root)
        self.root, self.split, self.seed, self.val_fraction = root, split, seed, val_fraction
        self.image_size, self.normalize = image_size, normalize
        self.all_attributes = list(t.names)
        lookup = {n.lower(): n for n in t.names}
        wanted = attributes or ["Smiling", "Male"]
        unknown = [a for a in wanted if a.lower().replace(" ", "_") not in lookup]
        if unknown:
            raise DataError(f"unknown CelebA attribute(s) {unknown}; valid: {', '.join(t.names)}")
        self.attributes = [lookup[a.lower().replace(" ", "_")] for a in wanted]
        self.num_classes = {a: 2 for a in self.attributes}
        self.skipped_missing, self.skipped_malformed, self.skipped_corrupt = (
            t.skipped_missing, t.skipped_malformed, 0,
        )  # fmt: skip
        if t.skipped_missing:
            warnings.warn(
                f"CelebA: skipped {t.skipped_missing} rows whose image is not in {t.image_dir} "
                f"(e.g. {t.missing_example}); using the {len(t.files)} present images",
                stacklevel=2,
            )
        if t.skipped_malformed:
            warnings.warn(
                f"CelebA: skipped {t.skipped_malformed} malformed list-file rows", stacklevel=2
            )
        idx = {s: np.flatnonzero(t.partition == c) for s, c in SPLIT_CODES.items()}
        carve = [s for s in ("val", "test") if len(idx[s]) == 0]
        self.carved = bool(carve)
        if carve:
            train = idx["train"]
            perm = np.random.default_rng(seed).permutation(len(train))
            n = int(round(val_fraction * len(train)))
            for k, s in enumerate(carve):
                idx[s] = np.sort(train[perm[k * n : (k + 1) * n]])
            idx["train"] = np.sort(train[perm[len(carve) * n :]])
        rows = idx[split][:max_samples]
        self._image_dir = t.image_dir
        self._files = [t.files[i] for i in rows]
        col = [self.all_attributes.index(a) for a in self.attributes]
        self._attr = t.attrs[rows]  # (N, 40) int8
        self._labels = (self._attr[:, col] > 0).astype(np.float32)  # (N, K)
        self._landmarks = None if t.landmarks is None else t.landmarks[rows]  # (N, 5, 2)

    def __len__(self) -> int:
        return len(self._files)

    def labels(self) -> np.ndarray:
        return self._labels

    def files(self) -> list[str]:
        """Image file names of this split, in label order."""
        return list(self._files)

    def _open(self, index: int) -> Image.Image:
        path = self._image_dir / self._files[index]
        try:
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot decode CelebA image {path}: {exc}") from exc

    def _decode(self, index: int) -> np.ndarray:
        img = prepare_pil(self._open(index), self.image_size)
        return np.asarray(img).transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, S, S)

    def get_uint8(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self._decode(index))

    def images_uint8(self) -> torch.Tensor:
        cached = getattr(self, "_uint8_cache", None)
        if cached is not None:
            return cached
        from tqdm.auto import tqdm

        n, s = len(self), self.image_size
        out = torch.empty((n, 3, s, s), dtype=torch.uint8)
        ok = np.ones(n, dtype=bool)

        def work(i: int) -> np.ndarray | None:
            try:
                return self._decode(i)
            except DataError:
                return None

        with ThreadPool(self.decode_workers) as pool:
            results = pool.imap(work, range(n), chunksize=32)
            for i, arr in enumerate(tqdm(results, total=n, desc="decode celeba", unit="img",
                                         disable=n < 2000)):  # fmt: skip
                if arr is None:
                    ok[i] = False
                else:
                    out[i] = torch.from_numpy(arr)
        if not ok.all():
            bad = [self._files[i] for i in np.flatnonzero(~ok)]
            warnings.warn(
                f"CelebA: dropped {len(bad)} undecodable images (e.g. {bad[0]}); "
                f"{int(ok.sum())} remain",
                stacklevel=2,
            )
            self.skipped_corrupt += len(bad)
            self._files = [f for f, k in zip(self._files, ok) if k]
            self._attr, self._labels = self._attr[ok], self._labels[ok]
            if self._landmarks is not None:
                self._landmarks = self._landmarks[ok]
            out = out[torch.from_numpy(ok)]
        self._uint8_cache = out
        return out

    def _to_prepared(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """(…, 5, 2) points in the 178x218 frame -> pixels of the prepared square image."""
        scale = np.array([width / OFFICIAL_SIZE[0], height / OFFICIAL_SIZE[1]], np.float32)
        return transform_landmarks(points * scale, width, height, self.image_size)

    def _disk_size(self) -> tuple[int, int]:
        """Size of the images on disk (the aligned set is uniform, so the first one tells)."""
        if not hasattr(self, "_size_on_disk"):
            try:
                with Image.open(self._image_dir / self._files[0]) as im:
                    self._size_on_disk = im.size
            except (OSError, IndexError):
                self._size_on_disk = OFFICIAL_SIZE
        return self._size_on_disk

    def landmarks_array(self) -> np.ndarray | None:
        """(N, 5, 2) landmarks in prepared-image pixels (NaN rows where missing), or None."""
        if self._landmarks is None:
            return None
        return self._to_prepared(self._landmarks, *self._disk_size())

    def _boxes(self, index: int, width: int, height: int) -> tuple[np.ndarray | None, dict]:
        lm = None
        if self._landmarks is not None and not np.isnan(self._landmarks[index]).any():
            lm = self._to_prepared(self._landmarks[index], width, height)
        ref = lm if lm is not None else self._to_prepared(MEAN_LANDMARKS, width, height)
        return lm, boxes_from_landmarks(ref)

    def region_masks(
        self, indices: list[int] | np.ndarray, names: tuple[str, ...] = REGIONS
    ) -> dict[str, np.ndarray]:
        """Region name -> (len(indices), S, S) bool masks, as in :meth:`sample`."""
        unknown = [n for n in names if n not in REGIONS]
        if unknown:
            raise DataError(f"unknown region(s) {unknown}; valid: {', '.join(REGIONS)}")
        w, h = self._disk_size()
        s = self.image_size
        out = {n: np.zeros((len(indices), s, s), dtype=bool) for n in names}
        for j, i in enumerate(indices):
            boxes = self._boxes(int(i), w, h)[1]
            for n in names:
                out[n][j] = box_mask(boxes[n], s)
        return out

    def sample(self, index: int) -> Sample:
        im = self._open(index)
        lm, boxes = self._boxes(index, *im.size)
        labels = {a: float(v) for a, v in zip(self.attributes, self._labels[index])}
        masks = {n: box_mask(b, self.image_size) for n, b in boxes.items()}
        return Sample(prepare_pil(im, self.image_size), labels, lm, masks)

    def fingerprint(self) -> str:
        files_hash = hashlib.sha256("\n".join(self._files).encode()).hexdigest()
        return fingerprint_of(
            self.name, files_hash, len(self), self._attr, self.attributes, self.split,
            self.image_size, self.normalize,
        )  # fmt: skip


def _download(root: Path) -> None:
    """Fetch CelebA with torchvision into ``root/celeba``; any failure becomes a DataError."""
    try:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        tvd.CelebA(str(root), split="all", target_type="attr", download=True)
    except Exception as exc:  # no network, Google Drive quota, gdown missing, bad checksum
        raise DataError(
            f"downloading CelebA into {root} failed ({type(exc).__name__}: {exc}). The download "
            "needs internet access and often hits Google Drive's daily quota. Download the files "
            f"by hand instead and place them under {root}. {HOW_TO_GET}"
        ) from exc

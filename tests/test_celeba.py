"""CelebA reader: layout, attributes, splits/carving, bad input, images, landmarks, masks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import CELEBA_ATTRIBUTES, make_celeba_fixture
from PIL import Image, ImageFile

from fxcore.data import celeba as celeba_mod
from fxcore.data.base import DataError, prepare_pil, transform_landmarks
from fxcore.data.celeba import MEAN_LANDMARKS, CelebA
from fxcore.data.celeba_files import attribute_statistics, box_mask
from fxcore.data.registry import load_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CELEBA_10K = SHARED / "celeba-10k"


def _attr_rows(root: Path) -> dict[str, np.ndarray]:
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()[2:]
    return {ln.split()[0]: np.array(ln.split()[1:], dtype=int) for ln in lines}


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_celeba_fixture(tmp_path_factory.mktemp("celeba"), n=40)


def test_official_splits_labels_and_crlf(official: Path) -> None:
    parts = {s: CelebA(official, split=s, attributes=["smiling", "MALE"]) for s in CelebA.SPLITS}
    assert [len(parts[s]) for s in CelebA.SPLITS] == [24, 8, 8]
    assert not parts["train"].carved
    ds = parts["val"]
    assert ds.attributes == ["Smiling", "Male"] and ds.num_classes == {"Smiling": 2, "Male": 2}
    assert ds.all_attributes == CELEBA_ATTRIBUTES
    rows = _attr_rows(official)
    ref = np.stack([rows[f][[31, 20]] for f in ds.files()]) > 0
    lab = ds.labels()
    assert lab.dtype == np.float32 and lab.shape == (8, 2)
    np.testing.assert_array_equal(lab, ref.astype(np.float32))
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), lab[0])


def test_unknown_attribute_lists_all_names(official: Path) -> None:
    with pytest.raises(DataError) as err:
        CelebA(official, attributes=["Smiling", "Happy"])
    assert "Happy" in str(err.value) and all(n in str(err.value) for n in CELEBA_ATTRIBUTES)


def test_missing_root_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*list_attr_celeba.txt.*download"):
        CelebA(tmp_path / "nope")
    with pytest.raises(DataError, match="list_attr_celeba.txt not found.*mmlab"):
        CelebA(tmp_path)
    make_celeba_fixture(tmp_path, n=4)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt is missing"):
        CelebA(tmp_path)
    ds = CelebA(make_celeba_fixture(tmp_path / "x", n=4) / "img_align_celeba", split="train")
    assert len(ds) == 3  # the image folder itself is accepted too
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("celeba", root=None)


def test_torchvision_nesting_and_load_dataset(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=10, nested=True, landmarks=False)
    ds = load_dataset("celeba", split="train", root=root, image_size=32)
    assert isinstance(ds, CelebA) and len(ds) == 6 and ds.image_size == 32
    assert ds.landmarks_array() is None


def test_carving_is_disjoint_deterministic_and_seeded(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=40, all_train=True, landmarks=False)
    parts = {s: CelebA(root, split=s, seed=3) for s in CelebA.SPLITS}
    assert [len(parts[s]) for s in CelebA.SPLITS] == [32, 4, 4]
    assert all(p.carved for p in parts.values())
    sets = {s: set(p.files()) for s, p in parts.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"] and len(set().union(*sets.values())) == 40
    # The documented rule: seeded permutation of the present train rows, val first, then test.
    perm = np.random.default_rng(3).permutation(40)
    files = [f"{i + 1:06d}.jpg" for i in range(40)]
    assert sets["val"] == {files[i] for i in perm[:4]}
    assert sets["test"] == {files[i] for i in perm[4:8]}
    assert CelebA(root, split="val", seed=3).files() == parts["val"].files()
    assert set(CelebA(root, split="val", seed=4).files()) != sets["val"]
    assert len(CelebA(root, split="val", val_fraction=0.25)) == 10
    assert len(CelebA(root, split="train", max_samples=5)) == 5
    with pytest.raises(DataError, match="split"):
        CelebA(root, split="all")


def test_missing_images_skipped_with_one_warning(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=20, missing=5, landmarks=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = CelebA(root, split="train")
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "skipped 5 rows" in msgs[0]
    assert ds.skipped_missing == 5 and len(ds) == 11  # 12 present train rows, 1 carved
    # rows 15..19 are missing: official val (12..15) keeps 3 and test (16..19) keeps none -> carved
    with pytest.warns(UserWarning):
        test = CelebA(root, split="test")
    assert test.carved and len(test) == 1


def test_malformed_rows_skipped_and_counted(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=20, malformed=3, all_train=True, landmarks=False)
    with pytest.warns(UserWarning, match="skipped 3 malformed"):
        parts = [CelebA(root, split=s) for s in CelebA.SPLITS]
    assert parts[0].skipped_malformed == 3 and sum(len(p) for p in parts) == 17
    rows = (root / "list_attr_celeba.txt").read_text().splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join(rows[:2] + ["junk here", "000001.jpg 1"]))
    with pytest.raises(DataError, match="no well-formed rows"):
        CelebA(root)
    (root / "list_attr_celeba.txt").write_text("3\nSmiling Male\n000001.jpg 1 -1\n")
    with pytest.raises(DataError, match="40 attribute names"):
        CelebA(root)


def test_tolerant_value_spelling(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=6, all_train=True, landmarks=False)
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(" 1", "+1")  # "+1" is still a valid value
    path.write_text("\n".join(lines))
    parts = [CelebA(root, split=s) for s in CelebA.SPLITS]
    assert sum(len(p) for p in parts) == 6 and parts[0].skipped_malformed == 0


def test_images_match_prepare_pil_and_landmarks(official: Path) -> None:
    ds = CelebA(official, split="test", image_size=48)
    path = official / "img_align_celeba" / ds.files()[2]
    ref = np.asarray(prepare_pil(Image.open(path), 48)).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds.get_uint8(2).numpy(), ref)
    allimg = ds.images_uint8()
    assert allimg.shape == (8, 3, 48, 48) and allimg.dtype == torch.uint8
    assert torch.equal(allimg, torch.stack([ds.get_uint8(i) for i in range(len(ds))]))
    s = ds.sample(2)
    assert s.image.size == (48, 48) and s.labels == {
        "Smiling": ds.labels()[2, 0],
        "Male": ds.labels()[2, 1],
    }
    raw = [
        ln.split() for ln in (official / "list_landmarks_align_celeba.txt").read_text().splitlines()
    ]
    pts = np.array(dict((r[0], r[1:]) for r in raw[2:])[ds.files()[2]], np.float32).reshape(5, 2)
    np.testing.assert_allclose(s.landmarks, transform_landmarks(pts, 178, 218, 48), atol=1e-5)
    lms = ds.landmarks_array()
    assert lms.shape == (8, 5, 2)
    np.testing.assert_allclose(lms[2], s.landmarks, atol=1e-5)
    # masks: eyes box holds both eyes, mouth box both mouth corners, all inside the image
    for name, (a, b) in {"eyes": (0, 1), "mouth": (3, 4), "nose": (2, 2)}.items():
        m = s.masks[name]
        assert m.shape == (48, 48) and m.dtype == bool and 0 < m.sum() < 48 * 48 / 4
        for x, y in s.landmarks[[a, b]]:
            assert m[int(y), int(x)], name
    rm = ds.region_masks([2, 0], ("mouth", "eyes"))
    assert rm["mouth"].shape == (2, 48, 48)
    np.testing.assert_array_equal(rm["mouth"][0], s.masks["mouth"])
    with pytest.raises(DataError, match="region"):
        ds.region_masks([0], ("ears",))


def test_fixed_boxes_scale_with_image_size(tmp_path: Path) -> None:
    # 89x109 JPEGs (as the shared subset) and no landmark file: fixed boxes from MEAN_LANDMARKS
    root = make_celeba_fixture(tmp_path, n=5, size=(89, 109), landmarks=False, all_train=True)
    ds = CelebA(root, split="train", image_size=64)
    s = ds.sample(0)
    assert s.landmarks is None
    mean = transform_landmarks(MEAN_LANDMARKS * 0.5, 89, 109, 64)  # same face, half-size frame
    for name, (a, b) in {"eyes": (0, 1), "mouth": (3, 4), "nose": (2, 2)}.items():
        for x, y in mean[[a, b]]:
            assert s.masks[name][int(y), int(x)], name
    ref = CelebA(make_celeba_fixture(tmp_path / "big", n=5, landmarks=False, all_train=True))
    for name in ("eyes", "mouth", "nose"):  # same aligned crop at double size -> same boxes
        assert (ref.sample(0).masks[name] ^ s.masks[name]).sum() <= 2 * 64


def test_box_mask_pixel_centres() -> None:
    m = box_mask((1.0, 2.0, 3.0, 4.5), 6)
    ref = np.zeros((6, 6), bool)
    ref[2:4, 1:3] = True  # row centres 2.5, 3.5 (4.5 is not < 4.5); column centres 1.5, 2.5
    np.testing.assert_array_equal(m, ref)


def test_truncated_jpeg(tmp_path: Path) -> None:
    root = make_celeba_fixture(tmp_path, n=10, corrupt=2, all_train=True, landmarks=False)
    ds = CelebA(root, split="train", val_fraction=0.0)
    assert len(ds) == 10 and ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(DataError, match="000002.jpg"):
        ds.get_uint8(1)
    fp = ds.fingerprint()
    with pytest.warns(UserWarning, match="dropped 2 undecodable images"):
        imgs = ds.images_uint8()
    assert imgs.shape[0] == len(ds) == len(ds.labels()) == 8 and ds.skipped_corrupt == 2
    assert "000002.jpg" not in ds.files() and ds.fingerprint() != fp
    rows = _attr_rows(root)
    np.testing.assert_array_equal(ds.labels()[:, 0], [rows[f][31] > 0 for f in ds.files()])
    assert torch.equal(imgs[1], ds.get_uint8(1)) and ds.files()[1] == "000004.jpg"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_fingerprint_changes_with_preparation(official: Path) -> None:
    a = CelebA(official, split="train")
    assert a.fingerprint() == CelebA(official, split="train").fingerprint()
    others = [
        CelebA(official, split="val"),
        CelebA(official, split="train", image_size=32),
        CelebA(official, split="train", normalize=False),
        CelebA(official, split="train", attributes=["Young"]),
        CelebA(official, split="train", max_samples=3),
    ]
    assert len({a.fingerprint(), *(o.fingerprint() for o in others)}) == 6


def test_download_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    class Offline:
        def __init__(self, root: str, **kwargs: object) -> None:
            calls.append((root, kwargs))
            raise RuntimeError("Failed to reach drive.google.com")

    monkeypatch.setattr(torchvision.datasets, "CelebA", Offline)
    with pytest.raises(DataError, match="internet.*Google Drive.*mmlab"):
        CelebA(tmp_path / "new", download=True)
    assert calls == [
        (str(tmp_path / "new"), {"split": "all", "target_type": "attr", "download": True})
    ]
    # files already present: no download attempted
    root = make_celeba_fixture(tmp_path / "have", n=5, nested=True, landmarks=False)
    CelebA(root, split="train", download=True)
    assert len(calls) == 1


def test_attribute_statistics_matches_numpy(official: Path) -> None:
    st = attribute_statistics(official)
    x = np.stack(list(_attr_rows(official).values())) > 0
    assert st["names"] == CELEBA_ATTRIBUTES and st["num_rows"] == 40
    np.testing.assert_allclose(st["positive_rate"], x.mean(0))
    co = np.array([[np.mean(x[:, a] & x[:, b]) for b in range(40)] for a in range(40)])
    np.testing.assert_allclose(st["cooccurrence"], co)
    a, b = 31, 20
    np.testing.assert_allclose(st["conditional"][a, b], x[x[:, a], b].mean())
    np.testing.assert_allclose(np.diag(st["conditional"]), 1.0)


@pytest.mark.skipif(not CELEBA_10K.is_dir(), reason=f"real CelebA subset not at {CELEBA_10K}")
def test_real_celeba_10k() -> None:
    parts = [CelebA(CELEBA_10K, split=s, attributes=["Smiling", "Male"]) for s in CelebA.SPLITS]
    assert [len(p) for p in parts] == [8000, 1000, 1000] and parts[0].carved
    labels = np.concatenate([p.labels() for p in parts])
    assert len(labels) == 10_000
    assert round(float(labels[:, 0].mean()), 3) == 0.482
    assert round(float(labels[:, 1].mean()), 3) == 0.422
    st = attribute_statistics(CELEBA_10K)
    rate = dict(zip(st["names"], st["positive_rate"]))
    assert st["num_rows"] == 10_000 and round(rate["Smiling"], 3) == 0.482
    assert round(rate["Male"], 3) == 0.422 and st["cooccurrence"].shape == (40, 40)
    ds = parts[1]
    imgs = torch.stack([ds.get_uint8(i) for i in range(3)])  # decode a few only
    assert imgs.shape == (3, 3, 64, 64) and imgs.float().std() > 10
    s = ds.sample(0)
    assert s.landmarks is None and set(s.masks) == {"mouth", "eyes", "nose"}


def test_module_constants() -> None:
    assert celeba_mod.REGIONS == ("mouth", "eyes", "nose")
    assert MEAN_LANDMARKS.shape == (5, 2)


def test_label_statistics_match_numpy() -> None:
    from fxcore.data.base import label_statistics

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(200, 4)).astype(np.float32)
    x[:, 3] = 0  # a constant column: no conditional, no correlation
    s = label_statistics(x)
    np.testing.assert_allclose(s["positive_rate"], x.mean(0))
    np.testing.assert_allclose(s["cooccurrence"][0, 1], np.mean(x[:, 0] * x[:, 1]))
    np.testing.assert_allclose(s["conditional"][0, 1], x[x[:, 0] == 1, 1].mean())
    np.testing.assert_allclose(s["phi"][0, 1], np.corrcoef(x[:, 0], x[:, 1])[0, 1])
    assert np.isnan(s["conditional"][3, 0]) and np.isnan(s["phi"][3, 0])

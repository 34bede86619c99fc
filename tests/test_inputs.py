"""One experiment-inputs API: trainer, analysis, CLI and app rebuild the same data and inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures_data import make_celeba_fixture

from fxcore.cli.main import main
from fxcore.data.inputs import InputSpec, capabilities, dataset_kwargs, input_spec, load_split
from fxcore.store.probeset import probe_set
from fxcore.store.runs import load_experiment
from fxcore.train import loop as train_mod

APP_DIR = Path(__file__).resolve().parents[1] / "app"
N = 40  # CelebA fixture rows, all in the official train partition (val is carved)


def _train_celeba(root: Path, data: Path, out: str, extra: list[str]) -> Path:
    argv = [
        "train",
        "--dataset",
        "celeba",
        "--data-root",
        str(data),
        "--model",
        "vgg-mini",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--pretrained",
        "no",
        "--no-progress",
        "--out",
        str(root / out),
        *extra,
    ]
    assert main(argv) == 0
    return root / out


def test_val_fraction_reaches_trainer_analysis_and_app(tmp_path: Path, monkeypatch) -> None:
    data = make_celeba_fixture(tmp_path / "celeba", n=N, size=(45, 55), all_train=True)
    seen: list[int] = []
    real_evaluate = train_mod.evaluate

    def spy(models, ds_val, *args, **kwargs):  # records what the real trainer validates on
        seen.append(len(ds_val))
        return real_evaluate(models, ds_val, *args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate", spy)
    root = tmp_path / "ck"
    default = _train_celeba(root, data, "default", [])
    wide = _train_celeba(root, data, "wide", ["--val-fraction", "0.2"])
    assert seen == [round(0.1 * N), round(0.2 * N)]  # the trainer saw the larger split

    exp = load_experiment(wide)
    assert exp.info["config"]["val_fraction"] == 0.2
    x, _ = probe_set(exp, 1000)  # analysis: every validation image
    assert len(x) == seen[1]
    assert len(probe_set(load_experiment(default), 1000)[0]) == seen[0]
    val = load_split(exp.info, "val")
    train_split = load_split(exp.info, "train")
    assert len(val) == seen[1] and len(train_split) == N - 2 * seen[1]  # val and test carved

    sys.path.insert(0, str(APP_DIR))
    try:
        import cache  # the app's cached dataset

        assert len(cache.dataset(exp.info["config"], "val")) == seen[1]
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
        at = AppTest.from_file(str(APP_DIR / "Home.py"), default_timeout=120)
        at.session_state["experiment"] = "wide"
        at.run()
        at.switch_page("views/1_Feature_maps.py").run()
        assert not at.exception, [e.value for e in at.exception]
        labels = [w.label for w in at.number_input]
        assert f"Validation image (0–{seen[1] - 1})" in labels, labels
    finally:
        sys.path.remove(str(APP_DIR))


@pytest.mark.parametrize(
    ("info", "spec"),
    [
        (
            {"config": {"dataset": "mnist", "image_size": 224, "model": "fcnn3"}},
            InputSpec(28, False, "L"),
        ),
        (
            {"config": {"dataset": "synthfaces", "image_size": 32, "model": "vgg-mini"}},
            InputSpec(32, True, "RGB"),
        ),
        (
            {"dataset": "imported", "model": "vgg-mini", "config": {"model": "vgg-mini"}},
            InputSpec(64, True, "RGB"),
        ),
        (
            {"dataset": "imported", "model": "vgg19", "config": {"model": "vgg19"}},
            InputSpec(224, True, "RGB"),
        ),
    ],
)
def test_input_spec(info: dict, spec: InputSpec) -> None:
    assert input_spec(info) == spec


def test_capabilities() -> None:
    imported = capabilities({"dataset": "imported", "model": "vgg19", "config": {"model": "vgg19"}})
    assert (imported.has_dataset, imported.probe_images, imported.face_regions) == (0, 0, 0)
    assert imported.conv_layers
    mnist = capabilities({"config": {"dataset": "mnist", "model": "fcnn3"}})
    assert mnist.has_dataset and mnist.probe_images
    assert not mnist.face_regions and not mnist.conv_layers
    faces = capabilities({"config": {"dataset": "synthfaces", "model": "vgg-mini"}})
    assert faces.face_regions and faces.conv_layers


def test_dataset_kwargs_carry_every_field_that_shapes_a_split() -> None:
    cfg = {
        "dataset": "celeba",
        "data_root": "/d",
        "attributes": ["Male"],
        "image_size": 48,
        "val_fraction": 0.3,
        "synth_train": 99,
    }
    assert dataset_kwargs(cfg, "val") == {
        "root": "/d",
        "attributes": ["Male"],
        "image_size": 48,
        "val_fraction": 0.3,
    }
    synth = dict(cfg, dataset="synthfaces")
    assert dataset_kwargs(synth, "train")["num_samples"] == 99
    assert "num_samples" not in dataset_kwargs(synth, "val")
    assert "image_size" not in dataset_kwargs(dict(cfg, dataset="mnist"), "val")

"""What a reader must see at a glance: the sanity verdict beside every Grad-CAM, warnings for an
image without a face or outside the training data, one evaluation line per model, and a drift
heatmap whose colour scale the reader picks (streamlit's AppTest, no browser)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from test_app import APP_DIR, DYNAMICS, FEATURES, ok, open_page, specs  # noqa: E402

from fxcore.explain.attribution import layer_verdicts  # noqa: E402

sys.path.insert(0, str(APP_DIR))  # as `streamlit run app/Home.py` does (test_app does it too)
import cache  # noqa: E402
import charts  # noqa: E402


@pytest.fixture
def root(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(tiny_root))
    return tiny_root


def gradient_png(side: int = 400) -> bytes:
    """A picture with no face in it."""
    g = np.linspace(0, 255, side)[None, :].repeat(side, 0)
    arr = np.stack([g, g[::-1], np.full_like(g, 120)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def portrait_jpeg() -> bytes:
    """A real photo of a face (matplotlib's sample of Grace Hopper)."""
    from matplotlib import cbook

    return cbook.get_sample_data("grace_hopper.jpg").read()


def warnings_text(at) -> str:
    return " ".join(w.value for w in at.warning)


# ---------------------------------------------------------------- sanity verdicts


def test_layer_verdicts_combine_models() -> None:
    ok_, bad = {"passes": True, "rank_corr": [0.3, 0.1]}, {"passes": False, "rank_corr": [0.9, 0.8]}
    v = layer_verdicts(
        {"A": {"gradcam:x": ok_, "gradcam:y": ok_}, "B": {"gradcam:x": bad, "gradcam:y": ok_}},
        ["gradcam:x", "gradcam:y", "gradcam:z"],
    )
    assert v["gradcam:x"].passes is False and v["gradcam:x"].failed == ("B",)
    assert v["gradcam:x"].mark == "✗" and v["gradcam:x"].rank_corr["B"] == pytest.approx(0.8)
    assert v["gradcam:y"].passes is True and v["gradcam:y"].text == "✓ sanity"
    assert v["gradcam:z"].passes is None and v["gradcam:z"].mark == "?"  # checked for no model


def test_layer_sanity_covers_every_conv_and_is_cached(root: Path) -> None:
    from fxcore.explain.sanity import default_layer, layer_sanity
    from fxcore.store.runs import load_experiment

    exp = load_experiment(root / "tiny-synth")
    verdicts = layer_sanity(exp, exp.runs[:2], 3, n_images=8)
    convs = [n for n in exp.runs[0].model_order(list(verdicts))]
    assert len(verdicts) == 16 and all(v.passes in (True, False) for v in verdicts.values())
    assert layer_sanity(exp, exp.runs[:2], 3, n_images=8) == verdicts  # from the disk cache
    best = default_layer(verdicts, convs, "features.10")
    assert best is None or verdicts[best].passes


def fake_sanity(failing: set[str]):
    """A stand-in for the (real, slow-ish) check: every conv passes except ``failing``."""
    from fxcore.explain.activations import conv_layers

    def layer_sanity(exp, runs, epoch, **_):
        convs = conv_layers(runs[0].build_model(epoch))
        per = {
            f"gradcam:{c}": {
                "passes": c not in failing,
                "rank_corr": [0.9 if c in failing else 0.1],
            }
            for c in convs
        }
        verdicts = layer_verdicts({r.name: per for r in runs})
        return {k.removeprefix("gradcam:"): v for k, v in verdicts.items()}

    return layer_sanity


def test_feature_maps_mark_a_failing_layer(root: Path, monkeypatch) -> None:
    import fxcore.explain.sanity

    # features.10 is the deepest conv at >= 16 px on the tiny 32 px models (the old default)
    monkeypatch.setattr(fxcore.explain.sanity, "layer_sanity", fake_sanity({"features.10"}))
    cache._layer_sanity.clear()
    at = open_page(FEATURES, "tiny-synth")
    ok(at)
    layer = at.selectbox(key="fm_layer")
    assert layer.value == "features.7"  # the deepest passing one at >= 16 px
    marked = {o.split()[0]: o for o in layer.options}
    assert "✗ sanity" in marked["features.10"] and "✓ sanity" in marked["features.7"]
    assert "16 pixels" in layer.proto.help
    at.selectbox(key="fm_layer").set_value("features.10").run()
    ok(at)
    assert "fails the randomisation sanity check" in warnings_text(at)
    assert len(at.metric) == 2  # still shown, with the warning above


def test_feature_maps_say_when_no_layer_passes(root: Path, monkeypatch) -> None:
    import fxcore.explain.sanity
    from fxcore.explain.activations import conv_layers
    from fxcore.store.runs import load_experiment

    every = set(conv_layers(load_experiment(root / "tiny-synth").runs[0].build_model(0)))
    monkeypatch.setattr(fxcore.explain.sanity, "layer_sanity", fake_sanity(every))
    cache._layer_sanity.clear()
    at = open_page(FEATURES, "tiny-synth")
    ok(at)
    assert "No layer's Grad-CAM passes" in warnings_text(at)
    cache._layer_sanity.clear()


# ---------------------------------------------------------------- uploads


def test_no_face_is_a_warning_and_marks_the_probabilities(root: Path) -> None:
    at = open_page(FEATURES, "tiny-synth", fm_src="Upload a photo")
    at.get("file_uploader")[0].set_value(("gradient.png", gradient_png(), "image/png")).run()
    ok(at)
    assert "No face found" in warnings_text(at)
    assert [m.label for m in at.metric] == [
        "P(Smiling) · not meaningful: no face",
        "P(Male) · not meaningful: no face",
    ]


def test_photo_on_a_synthfaces_experiment_names_its_training_data(root: Path) -> None:
    at = open_page(FEATURES, "tiny-synth", fm_src="Upload a photo")
    at.get("file_uploader")[0].set_value(("hopper.jpg", portrait_jpeg(), "image/jpeg")).run()
    ok(at)
    text = warnings_text(at)
    assert "trained on SynthFaces, synthetic cartoon faces" in text
    assert "No face found" not in text  # dlib finds her face
    assert [m.label for m in at.metric] == ["P(Smiling)", "P(Male)"]


def test_photo_experiment_without_its_dataset_opens_on_upload(
    tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """A CelebA experiment on a machine without CelebA: no sample source, no --download error,
    no out-of-distribution note for a photo, and the sanity check says why it did not run."""
    exp = tmp_path / "ck" / "celeba-elsewhere"
    shutil.copytree(tiny_root / "tiny-synth", exp)
    shutil.rmtree(exp / ".fxcore-cache", ignore_errors=True)  # results made with the data
    info = json.loads((exp / "experiment.json").read_text())
    info["dataset"] = info["config"]["dataset"] = "celeba"
    info["config"]["data_root"] = str(tmp_path / "not-here")
    (exp / "experiment.json").write_text(json.dumps(info))
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(exp.parent))
    at = open_page(FEATURES, "celeba-elsewhere")
    ok(at)
    assert at.radio(key="fm_src").options == ["Upload a photo"]
    captions = " ".join(c.value for c in at.caption)
    assert "Dataset samples unavailable: CelebA face photos are not on this machine" in captions
    assert not at.error and "--download" not in captions
    at.get("file_uploader")[0].set_value(("hopper.jpg", portrait_jpeg(), "image/jpeg")).run()
    ok(at)
    assert "trained on" not in warnings_text(at)
    assert "sanity check was not run" in " ".join(c.value for c in at.caption)
    assert len(at.metric) == 2


# ---------------------------------------------------------------- Home


def test_home_evaluation_is_one_line_per_model(
    tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from fxcore.store.eval_store import save_evaluation

    exp = tmp_path / "ck" / "tiny-synth"
    shutil.copytree(tiny_root / "tiny-synth", exp)
    per_epoch = {
        str(e): {"accuracy": 0.5 + e / 10, "balanced_accuracy": 0.5, "auc": 0.6 + e / 10}
        for e in range(4)
    }
    for name, source, framing in (
        ("test-split", "celeba test split", "centre"),
        ("test-split", "celeba test split", "align"),
        ("img_align_celeba", "/tmp/standin/img_align_celeba + labels", "align"),
        ("img_align_celeba", "/tmp/standin/img_align_celeba + labels", "centre"),
    ):
        save_evaluation(
            exp,
            {
                "set": name,
                "source": source,
                "framing": framing,
                "n_images": 10,
                "time": "2026-01-01T00:00:00Z",
                "runs": {"Smiling": per_epoch, "Male": per_epoch},
            },
        )
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(exp.parent))
    at = open_page(None, "tiny-synth")
    ok(at)
    summary = next(m.value for m in at.markdown if "accuracy **" in m.value)
    lines = summary.split("  \n")
    assert len(lines) == 2 and lines[0].startswith("**L1: Smiling**")
    assert (
        "test split, aligned (centre crop, epoch 3): accuracy **0.800**, AUC **0.900**" in lines[0]
    )
    assert "stand-in, unaligned (re-aligned, epoch 3)" in lines[1]
    table = at.expander[0]
    assert "32 rows" in table.label  # 4 sets x 2 runs x 4 epochs, behind the expander
    assert set(table.dataframe[0].value["set"]) == {"test split, aligned", "stand-in, unaligned"}


# ---------------------------------------------------------------- charts


def test_row_scaled_colour_scales() -> None:
    m = np.array([[0.0, 1.0, 2.0], [0.0, 4.0, 9.0], [np.nan, np.nan, np.nan]])
    z, lo, hi, label = charts.row_scaled(m, "row")
    assert (lo, hi) == (0.0, 1.0) and "maximum" in label
    np.testing.assert_allclose(z[:2].max(axis=1), 1.0)
    assert np.all(z[2] == 0)
    z, *_ = charts.row_scaled(m, "log")
    assert np.isnan(z[0, 0]) and z[1, 2] == pytest.approx(np.log10(9))
    z, lo, hi, _ = charts.row_scaled(m, "linear")
    assert hi == 9.0
    assert charts.interval(0.9991, 0.998, 1.0) == "0.999 [0.998, 1.000]"


def test_drift_heatmap_scale_is_selectable(root: Path) -> None:
    at = open_page(DYNAMICS, "tiny-synth", td_cka_n=16, td_loc_n=8)
    ok(at)
    scale = at.radio(key="td_scale")
    assert scale.value == "row" and list(scale.options) == [
        charts.ROW_SCALES[k] for k in charts.ROW_SCALES
    ]

    def drift_z() -> np.ndarray:
        spec = json.loads(next(s for s in specs(at) if "L1: Smiling: drift" in s))
        z = spec["data"][0]["z"]
        if isinstance(z, dict):  # plotly's binary encoding of a numpy array
            shape = [int(n) for n in str(z["shape"]).split(",")]
            return np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape(shape)
        return np.array(z, float)

    z = drift_z()
    assert np.nanmax(z) <= 1.0 + 1e-6
    for choice in ("log", "linear"):
        at.radio(key="td_scale").set_value(choice).run()
        ok(at)
        assert drift_z().tolist() != z.tolist()
    cka = next(c.value for c in at.caption if "Minibatch linear CKA" in c.value)
    assert "below 0" in cka

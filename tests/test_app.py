"""The Streamlit app on the tiny experiments, page by page, with streamlit's AppTest (no browser)."""

from __future__ import annotations

import functools
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

APP_DIR = Path(__file__).resolve().parents[1] / "app"
HOME = str(APP_DIR / "Home.py")
FEATURES, WEIGHTS = "views/1_Feature_maps.py", "views/2_Weight_statistics.py"
DYNAMICS, DATASET = "views/3_Training_dynamics.py", "views/4_Dataset.py"
TIMEOUT = 120

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

sys.path.insert(0, str(APP_DIR))  # as `streamlit run app/Home.py` does for the pages
import cache  # noqa: E402
import ui  # noqa: E402


@pytest.fixture
def root(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(tiny_root))
    return tiny_root


def open_page(page: str | None, experiment: str, **state: object) -> AppTest:
    """Run Home, pick the experiment there, then switch to ``page`` with extra widget state."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.session_state["experiment"] = experiment
    at.run()
    if page:
        at.switch_page(page)
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(str(e.value) for e in [*at.error, *at.markdown, *at.code])
    assert "Traceback" not in text


def specs(at: AppTest) -> list[str]:
    return [c.proto.spec for c in at.get("plotly_chart")]


def images(at: AppTest) -> list[str]:
    return [url for el in at.image for url in el.value]


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


# ---------------------------------------------------------------- Home


def test_home_lists_experiments_and_curves(root: Path) -> None:
    at = open_page(None, "tiny-synth")
    ok(at)
    df = at.dataframe[0].value
    assert set(df["experiment"]) == {"tiny-synth", "tiny-mnist"}
    row = df[df["experiment"] == "tiny-synth"].iloc[0]
    assert row["model"] == "vgg-mini" and row["epochs"] == "0–3"
    assert row["state"] == "finished 3/3"  # from the trainer's progress.json
    assert not at.get("progress")  # nothing is training
    assert "Smiling" in row["best val accuracy"] and "Male" in row["best val accuracy"]
    assert at.selectbox(key="experiment_picker").options == ["tiny-mnist", "tiny-synth"]
    assert len(at.get("plotly_chart")) == 1  # training curves
    assert at.success  # no bad epochs


def test_home_without_experiments_offers_demo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(tmp_path / "none"))
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    ok(at)
    assert at.button(key="demo").label == "Train the built-in demo"
    assert any("python -m fxcore train --dataset celeba" in c.value for c in at.code)
    at.switch_page(WEIGHTS).run()  # other pages point back to Home instead of failing
    ok(at)
    assert any("No experiment found" in i.value for i in at.info)


def test_demo_button_trains_and_lists(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    import fxcore.cli.demo

    root = tmp_path / "fresh"
    made = []

    def fake_make_demo(out: Path, names: list[str] | None = None) -> list[Path]:
        made.extend(names or [])  # the real one trains for minutes; copy a tiny experiment
        for name in names or []:
            shutil.copytree(tiny_root / "tiny-synth", Path(out) / name)
        return [Path(out) / n for n in names or []]

    monkeypatch.setattr(fxcore.cli.demo, "make_demo", fake_make_demo)
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="demo").click().run()
    ok(at)
    assert made == list(fxcore.cli.demo.DEMOS)
    assert set(at.dataframe[0].value["experiment"]) == set(fxcore.cli.demo.DEMOS)


def test_bad_epoch_is_named_and_others_stay_usable(tiny_root: Path, tmp_path, monkeypatch) -> None:
    root = tmp_path / "ck"
    shutil.copytree(tiny_root / "tiny-synth", root / "tiny-synth")
    broken = root / "tiny-synth" / "Male" / "epoch_002.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
    at = open_page(None, "tiny-synth")
    ok(at)
    assert "epoch_002.safetensors" in at.warning[0].value
    at.switch_page(WEIGHTS).run()
    ok(at)
    assert at.select_slider(key="ws_range").options == ["0", "1", "3"]
    assert len(at.get("plotly_chart")) >= 6


# ---------------------------------------------------------------- Feature maps


def test_feature_maps_update_with_epoch_and_layer(root: Path) -> None:
    at = open_page(FEATURES, "tiny-synth")
    ok(at)
    assert at.select_slider(key="fm_epoch").value == 3
    layer = at.selectbox(key="fm_layer")
    assert layer.options[0].split()[0] == "features.0" and len(layer.options) == 16
    assert all("sanity" in o for o in layer.options)  # each with its randomisation verdict
    assert at.toggle(key="fm_shared").value is True
    assert [m.label for m in at.metric] == ["P(Smiling)", "P(Male)"]
    charts, imgs = specs(at), images(at)
    assert len(charts) == 2 and len(imgs) >= 7  # input + 3 images per model
    at.select_slider(key="fm_epoch").set_value(1).run()
    ok(at)
    assert specs(at) != charts
    charts = specs(at)
    at.selectbox(key="fm_layer").set_value("features.3").run()
    ok(at)
    assert specs(at) != charts
    charts = specs(at)
    at.toggle(key="fm_shared").set_value(False).run()  # per-model colour scales
    ok(at)
    assert specs(at) != charts


def test_feature_maps_mnist_shows_note(root: Path) -> None:
    at = open_page(FEATURES, "tiny-mnist")
    ok(at)
    assert any("no convolutional layer" in i.value for i in at.info)
    assert len(at.get("page_link")) == 1


def face_jpeg(size: int = 160, mode: str = "RGB") -> bytes:
    from fxcore.data.synthfaces import SynthFaces

    arr = SynthFaces("val", image_size=size, max_samples=1).render([0])[0].transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@functools.cache
def bad_uploads() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, expected words of the message)."""
    return {
        "notes.png": (b"this is not an image at all", "not an image"),
        "cut.jpg": (face_jpeg()[:2000], "damaged or incomplete"),
        "dot.png": (png(Image.new("RGB", (1, 1))), "at least 8x8"),
        "huge.png": (png(Image.new("1", (12000, 12000))), "megapixels"),  # 1-bit: ~20 kB
    }


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_uploads_give_messages_or_results(root: Path) -> None:
    at = open_page(FEATURES, "tiny-synth", fm_src="Upload a photo")
    ok(at)
    uploader = at.get("file_uploader")[0]
    assert sorted(uploader.proto.type) == [".jpeg", ".jpg", ".png", ".webp"]
    for name, (data, message) in bad_uploads().items():
        at.get("file_uploader")[0].set_value((name, data, "image/png")).run()
        ok(at)
        assert message in errors(at), (name, errors(at))
        assert not at.metric  # no result from a bad file
    at.get("file_uploader")[0].set_value(("cmyk.jpg", face_jpeg(mode="CMYK"), "image/jpeg")).run()
    ok(at)
    assert not at.error and len(at.metric) == 2 and len(at.get("plotly_chart")) == 2
    at.radio(key="fm_framing").set_value("Centre crop").run()  # no face framing: still a result
    ok(at)
    assert len(at.metric) == 2
    at.radio(key="fm_framing").set_value("Face crop").run()
    ok(at)
    assert len(at.metric) == 2


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_prepare_image_function() -> None:
    for data, message in bad_uploads().values():
        prepared, error = ui.prepare_image(data, 32, True)
        assert prepared is None and message in error
    prepared, error = ui.prepare_image(face_jpeg(mode="CMYK"), 32, True, crop_face=True)
    assert error is None and prepared.tensor.shape == (1, 3, 32, 32)
    assert prepared.display.size == (32, 32)


# ---------------------------------------------------------------- Weight statistics


def test_weight_statistics_pair(root: Path) -> None:
    at = open_page(WEIGHTS, "tiny-synth")
    ok(at)
    key = at.selectbox(key="ws_key")
    assert key.value == "features.0.weight"
    assert "running_mean" not in " ".join(key.options)
    assert at.select_slider(key="ws_range").value == (0, 3)
    charts = specs(at)
    assert len(charts) == 9  # mean row + variance row + zoom window, each L1 | L2 | L1-L2
    assert all(len(s) <= ui.MAX_FIGURE_BYTES for s in charts)
    at.selectbox(key="ws_key").set_value("classifier.0.weight").run()
    ok(at)
    assert specs(at) != charts
    charts = specs(at)
    at.select_slider(key="ws_range").set_value((2, 2)).run()  # a single epoch
    ok(at)
    assert specs(at) != charts
    assert "1 epoch(s) 2–2" in " ".join(c.value for c in at.caption)


def test_weight_statistics_mnist_unit_tiles(root: Path) -> None:
    at = open_page(WEIGHTS, "tiny-mnist")
    ok(at)
    assert at.selectbox(key="ws_key").value == "fc1.weight"
    charts = specs(at)
    assert len(charts) == 4  # mean, variance, zoom window, 28x28 unit tiles
    assert "28×28" in at.subheader[0].value and '"scaleanchor":"x"' in charts[-1]
    before = specs(at)
    at.select_slider(key="ws_range").set_value((1, 1)).run()
    ok(at)
    assert specs(at) != before
    at.radio(key="ws_tile_stat").set_value("variance").run()
    ok(at)


def test_weight_maps_cached_across_reruns(root: Path, monkeypatch) -> None:
    from fxcore.compare import analysis

    calls = []
    real = analysis.weight_maps
    monkeypatch.setattr(analysis, "weight_maps", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache._weight_maps.clear()
    at = open_page(WEIGHTS, "tiny-synth", ws_mode="maxabs")
    ok(at)
    at.run()
    at.toggle(key="ws_robust").set_value(True).run()  # display-only change
    ok(at)
    assert len(calls) == 1


def test_big_tensor_figure_fits_payload() -> None:
    from fxcore.measures.stats import pool_to_budget

    big = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    pooled, block = pool_to_budget(big, (512, 512))
    assert block == (8, 8)
    fig = ui.heatmap_figure(pooled, block=block, zmin=-1, zmax=1)
    assert ui.figure_bytes(fig) <= ui.MAX_FIGURE_BYTES
    hover = fig.data[0].hovertemplate
    assert "row %{y} (+7)" in hover and "col %{x} (+7)" in hover
    assert list(fig.data[0].x[:3]) == [0, 8, 16]


# ---------------------------------------------------------------- Training dynamics, Dataset


def test_training_dynamics(root: Path) -> None:
    at = open_page(DYNAMICS, "tiny-synth", td_cka_n=16, td_loc_n=8)
    ok(at)
    keys = {c.proto.id for c in at.get("plotly_chart")}
    assert len(keys) >= 8  # drift L1/L2/cosine, two lines, CKA heat+line, localisation
    before = specs(at)
    at.radio(key="td_measure").set_value("update").run()
    ok(at)
    assert specs(at) != before
    regions = at.multiselect(key="td_regions")
    assert {"mouth", "eyes", "nose"} <= set(regions.value)


def test_training_dynamics_mnist(root: Path) -> None:
    at = open_page(DYNAMICS, "tiny-mnist")
    ok(at)
    assert len(at.get("plotly_chart")) >= 2
    assert any("one run" in i.value for i in at.info)


SHARED_CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba-10k"


def test_dataset_page_celeba(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    """All 40 CelebA attribute rates (the seed paper's Fig. 2.1) and real sample images."""
    if not (SHARED_CELEBA / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA subset not found at {SHARED_CELEBA}")
    exp = tmp_path / "ck" / "celeba-pair"
    shutil.copytree(tiny_root / "tiny-synth", exp)
    info = json.loads((exp / "experiment.json").read_text())
    info["dataset"] = info["config"]["dataset"] = "celeba"
    info["config"]["data_root"] = str(SHARED_CELEBA)
    (exp / "experiment.json").write_text(json.dumps(info))
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(exp.parent))
    at = open_page(DATASET, "celeba-pair", ds_n=4)
    ok(at)
    rates = json.loads(specs(at)[0])["data"][0]
    assert len(rates["x"]) == 40 and "Smiling" in rates["x"]
    assert len(images(at)) == 4
    at.switch_page(FEATURES).run()  # a CelebA validation image through both models
    ok(at)
    assert len(at.metric) == 2


def test_dataset_pages(root: Path) -> None:
    at = open_page(DATASET, "tiny-synth", ds_n=8)
    ok(at)
    assert len(at.get("plotly_chart")) == 2  # rates + conditional heatmap
    assert len(images(at)) == 8
    assert len(at.dataframe) == 1  # 2x2 joint table
    at = open_page(DATASET, "tiny-mnist", ds_n=4)
    ok(at)
    assert len(at.get("plotly_chart")) == 1 and len(images(at)) == 4


def test_home_page_modules_do_not_import_torch() -> None:
    """The Home page reads JSON only: its imports leave torch to cache.prewarm (cold start)."""
    import subprocess

    code = (
        "import sys; sys.path.insert(0, 'app'); import cache, ui, pandas, plotly.subplots; "
        "import fxcore.store.checkpoints, fxcore.store.runs; print(sorted(m for m in ('torch', 'captum', 'cv2') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=APP_DIR.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_layer_picker_order_is_model_order(tiny_root: Path) -> None:
    """run.json's tensor order (used instead of building the model) is the model's own order."""
    from fxcore.store.runs import load_experiment

    for name in ("tiny-synth", "tiny-mnist"):
        run = load_experiment(tiny_root / name).runs[0]
        params = [n for n, _ in run.build_model(0).named_parameters()]
        assert run.weight_keys() == params
        layers = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in params))  # model order
        assert run.model_order(layers[::-1]) == layers


def test_layer_picker_order_for_alphabetical_run_json(tiny_root: Path, tmp_path: Path) -> None:
    """Runs written before run.json kept model order (sorted tensor list) still get model order."""
    from fxcore.store.runs import load_experiment

    exp_dir = tmp_path / "old"
    shutil.copytree(tiny_root / "tiny-synth", exp_dir)
    info_path = exp_dir / "Smiling" / "run.json"
    info = json.loads(info_path.read_text())
    info["tensors"] = dict(sorted(info["tensors"].items()))
    info_path.write_text(json.dumps(info))
    run = load_experiment(exp_dir).run("Smiling")
    assert list(run.shapes) == sorted(run.shapes)
    params = [n for n, _ in run.build_model(0).named_parameters()]
    assert run.weight_keys() == params

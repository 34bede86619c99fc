"""fxcore eval: metrics by hand, the upload path on a tiny fixture, clear errors, stored results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fxcore.compare.evaluate import EvalError, binary_metrics, evaluate_experiment, folder_set
from fxcore.data.synthfaces import SynthFaces
from fxcore.store.runs import load_experiment
from fxcore.upload.faces import prepare_upload

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"Attr{i}" for i in range(38)] + ["Smiling", "Male"]


def write_attr_file(path: Path, rows: dict[str, tuple[int, int]]) -> Path:
    """A CelebA-format attribute file: count, 40 names, then name + 40 values of -1/1."""
    lines = [str(len(rows)), " ".join(NAMES)]
    for name, (smiling, male) in rows.items():
        vals = ["-1"] * 38 + [str(2 * smiling - 1), str(2 * male - 1)]
        lines.append(f"{name} " + " ".join(vals))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_binary_metrics_by_hand() -> None:
    p = np.array([0.92, 0.83, 0.28, 0.63, 0.17, 0.44])
    y = np.array([1, 0, 0, 1, 0, 1])
    m = binary_metrics(p, y)
    # predictions 1 1 0 1 0 0 -> correct 1 0 1 1 1 0
    assert m["accuracy"] == pytest.approx(4 / 6)
    # TPR: positives at 0.92, 0.63, 0.44 -> 2/3; TNR: negatives at 0.83, 0.28, 0.17 -> 2/3
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # AUC: pairs (pos > neg) of 3x3: 0.92 beats all 3, 0.63 and 0.44 beat 0.28 and 0.17 -> 7/9
    assert m["auc"] == pytest.approx(7 / 9)
    # confidences 0.92 0.83 0.72 0.63 0.83 0.56 in 10 bins over [0.5, 1]: bin 8 {0.92 right},
    # bin 6 {0.83 wrong, 0.83 right}, bin 4 {0.72 right}, bin 2 {0.63 right}, bin 1 {0.56 wrong}
    ece = (abs(1 - 0.92) + 2 * abs(0.5 - 0.83) + abs(1 - 0.72) + abs(1 - 0.63) + abs(0 - 0.56)) / 6
    assert m["ece"] == pytest.approx(ece)
    assert (m["n"], m["positives"]) == (6, 3)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Six rendered face photos (PNG, 96 px) with their true Smiling/Male labels."""
    folder = tmp_path_factory.mktemp("photos") / "img"
    folder.mkdir()
    ds = SynthFaces("val", image_size=96, max_samples=6)
    rows = {}
    for i in range(6):
        s = ds.sample(i)
        s.image.save(folder / f"{i:06d}.png")
        rows[f"{i:06d}.png"] = (int(s.labels["Smiling"]), int(s.labels["Male"]))
    write_attr_file(folder.parent / "list_attr_celeba.txt", rows)
    return folder, np.array(list(rows.values()))


def test_eval_matches_the_upload_path_by_hand(tiny_root: Path, photo_folder) -> None:
    folder, labels = photo_folder
    exp = load_experiment(tiny_root / "tiny-synth")
    res = evaluate_experiment(
        exp, folder_set(folder, None, ["Smiling", "Male"]), "face", epochs=[1, 3], progress=False
    )
    assert res["n_images"] == 6 and sum(res["framed"].values()) == 6
    for k, run in enumerate(("Smiling", "Male")):
        model = exp.run(run).build_model(3)
        with torch.no_grad():
            probs = [
                torch.sigmoid(
                    model(prepare_upload(folder / f"{i:06d}.png", 32, True, crop_face=True).tensor)
                )[0, 0].item()
                for i in range(6)
            ]
        hand = np.mean((np.array(probs) >= 0.5) == labels[:, k])
        assert res["runs"][run]["3"]["accuracy"] == pytest.approx(hand)
        assert set(res["runs"][run]) == {"1", "3"}
    stored = json.loads((exp.path / "evaluations" / "img-face.json").read_text())
    assert stored["runs"] == res["runs"]


def test_images_without_labels_and_labels_without_images(tmp_path: Path) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    Image.new("RGB", (40, 40)).save(folder / "a.jpg")
    Image.new("RGB", (40, 40)).save(folder / "b.jpg")
    labels = write_attr_file(tmp_path / "labels.txt", {"a.jpg": (1, 0)})
    with pytest.raises(EvalError, match="1 image.*no row.*b.jpg"):
        folder_set(folder, labels, ["Smiling"])
    labels = write_attr_file(
        tmp_path / "labels.txt", {"a.jpg": (1, 0), "b.jpg": (0, 1), "c.jpg": (1, 1)}
    )
    subset = folder_set(folder, labels, ["Smiling"])  # a full file for a subset: not an error
    assert [p.name for p in subset.items] == ["a.jpg", "b.jpg"]
    assert subset.labels["Smiling"].tolist() == [1.0, 0.0] and subset.labels_without_image == 1
    with pytest.raises(EvalError, match="--labels"):
        folder_set(folder, None, ["Smiling"])
    with pytest.raises(EvalError, match="no column Bald"):
        folder_set(
            folder,
            write_attr_file(tmp_path / "l2.txt", {"a.jpg": (1, 0), "b.jpg": (0, 1)}),
            ["Bald"],
        )


def test_cli_eval_with_a_full_attribute_file_scores_the_images_present(
    tiny_root: Path, photo_folder, tmp_path: Path, capsys
) -> None:
    """An attribute file listing many more photos than the folder holds (CelebA's official
    file for a subset): the images present are evaluated, the rows without one counted."""
    import shutil

    from fxcore.cli.main import main

    folder, labels = photo_folder
    rows = {f"{i:06d}.png": (int(s), int(m)) for i, (s, m) in enumerate(labels)}
    rows.update({f"{i:06d}.jpg": (i % 2, 1 - i % 2) for i in range(100, 140)})  # 40 absent
    full = write_attr_file(tmp_path / "list_attr_celeba.txt", rows)
    shutil.copytree(tiny_root / "tiny-synth", tmp_path / "tiny-synth")
    argv = ["eval", "tiny-synth", "--root", str(tmp_path), "--images", str(folder)]
    assert main([*argv, "--labels", str(full), "--face-crop", "--epoch", "3", "--json"]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert res["n_images"] == 6 and res["labels_without_image"] == 40
    assert res["runs"]["Smiling"]["3"]["n"] == 6
    assert "40 labelled row(s)" in out.err and "evaluated the 6 image(s) present" in out.err
    assert main([*argv, "--labels", str(full), "--face-crop", "--epoch", "3"]) == 0
    assert "40 labelled row(s)" in capsys.readouterr().err
    # An image without a label row is still an error, naming it.
    Image.new("RGB", (40, 40)).save(tmp_path / "extra.png")
    shutil.copytree(folder, tmp_path / "img")
    shutil.move(tmp_path / "extra.png", tmp_path / "img" / "extra.png")
    argv[-1] = str(tmp_path / "img")
    assert main([*argv, "--labels", str(full), "--face-crop", "--epoch", "3"]) == 1
    assert "1 image(s)" in capsys.readouterr().err


def test_cli_eval_default_test_split_json(tiny_root: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "fxcore",
        "eval",
        "tiny-synth",
        "--root",
        str(tiny_root),
        "--centre",
        "--epoch",
        "2",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["set"] == "test-split" and res["framing"] == "centre"
    for run in ("Smiling", "Male"):
        m = res["runs"][run]["2"]
        assert 0 <= m["accuracy"] <= 1 and m["n"] == res["n_images"] > 0
    bad = subprocess.run(
        cmd[:-3] + ["--epoch", "99"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: epoch 99 is not on disk")


def test_home_shows_the_stored_evaluations(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    from streamlit.testing.v1 import AppTest

    shutil.copytree(tiny_root / "tiny-synth", tmp_path / "tiny-synth")
    shutil.rmtree(tmp_path / "tiny-synth" / "evaluations", ignore_errors=True)
    exp = load_experiment(tmp_path / "tiny-synth")
    res = evaluate_experiment(exp, None, "centre", epochs=[3], progress=False)
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=120)
    at.session_state["experiment"] = "tiny-synth"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Evaluation" in [h.value for h in at.subheader]
    df = at.dataframe[1].value
    assert sorted(df["run"]) == ["Male", "Smiling"] and set(df["framing"]) == {"centre crop"}
    for _, row in df.iterrows():
        assert row["accuracy"] == pytest.approx(res["runs"][row["run"]]["3"]["accuracy"])

"""Shipped comparison results (EXP/results/): stored through the store's format, checked on read,
served with their provenance when the dataset is absent, and equal to a recomputation.

The last tests are the acceptance checks on a fresh clone of this repository with the dataset
hidden: ``compare celeba-pair --json`` and the Training dynamics page show the shipped trio."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_data import make_celeba_fixture

from fxcore.cli.main import main
from fxcore.compare.control import compare
from fxcore.compare.ship import ship_experiment, store_results
from fxcore.data.inputs import DATA_ENV
from fxcore.store import results
from fxcore.store.runs import load_experiment

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_probe": 16, "n_resamples": 20, "seed": 0}
SMALL_ARGS = ["--probe", "16", "--bootstrap", "20"]
KINDS = {"dynamics", "cka", "localisation", "accuracy", "probes", "attribution"}


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny CelebA trio, shipped with its results, its dataset folder)."""
    base = tmp_path_factory.mktemp("trio")
    data = make_celeba_fixture(base / "faces-40", n=40, size=(45, 55), all_train=False)
    exp = base / "checkpoints" / "tiny-trio"
    argv = ["train", "--dataset", "celeba", "--data-root", str(data), "--model", "vgg-mini"]
    argv += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--pretrained", "no"]
    assert main([*argv, "--controls", "1", "--no-progress", "--out", str(exp)]) == 0
    ship_experiment(exp)
    store_results(load_experiment(exp), **SMALL)
    return exp, data


def _hidden(exp: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the experiment on a machine without its dataset (and without its cache)."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    copy = shutil.copytree(exp, tmp_path / "clone" / "checkpoints" / exp.name)
    shutil.rmtree(copy / ".fxcore-cache", ignore_errors=True)
    return copy


def test_store_holds_every_kind_with_provenance(trio) -> None:
    exp, _ = trio
    man = results.manifest(exp)
    assert man is not None and {e["kind"] for e in man["entries"].values()} == KINDS
    assert all(e["schema"] == results.schema(e["kind"]) for e in man["entries"].values())
    label = results.provenance_label(man["provenance"])
    assert re.match(r"computed on \d+ CelebA validation faces of dataset faces-40", label)
    assert "fingerprint" in label and "fxcore" in label


def test_compare_without_the_dataset_reads_the_store(trio, tmp_path, monkeypatch) -> None:
    exp, _ = trio
    copy = _hidden(exp, tmp_path, monkeypatch)
    res = compare(load_experiment(copy), **SMALL)
    for part in (res["cka"], res["control"]["cka"], res["accuracy"], res["attribution"]):
        assert part["provenance"]["source"] == "shipped"
    assert res["control"]["runs"] == ["Smiling", "Smiling-control1"]
    assert set(res["control"]["cka"]) >= {"layers", "low", "high", "null"}
    fresh = compare(load_experiment(exp), **SMALL)  # the original folder: its local cache
    assert list(results.differences(res, fresh)) == []


def test_cli_compare_json_without_the_dataset(trio, tmp_path, monkeypatch, capsys) -> None:
    exp, _ = trio
    copy = _hidden(exp, tmp_path, monkeypatch)
    assert main(["compare", str(copy), "--json", *SMALL_ARGS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["control"]["cka"]["provenance"]["data_name"] == "faces-40"
    shutil.rmtree(copy / "results")  # nothing shipped: one line saying what to do
    assert main(["compare", str(copy), "--json", *SMALL_ARGS]) == 1
    err = capsys.readouterr().err.strip()
    # The plan and progress come first on stderr; the failure is its one last line.
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "--data-root" in last and DATA_ENV in last, err
    assert "Traceback" not in err


def test_recomputed_results_agree_with_the_shipped_ones(trio, capsys, monkeypatch) -> None:
    exp, data = trio
    monkeypatch.setenv(DATA_ENV, "")  # --data-root sets it for the process: undone at teardown
    assert main(["results", "verify", str(exp), "--data-root", str(data)]) == 0
    n = len(results.manifest(exp)["entries"])
    assert f"{n} of {n} shipped results agree with the recomputed ones" in capsys.readouterr().out


def test_a_damaged_or_older_entry_is_not_served(trio, tmp_path, monkeypatch) -> None:
    exp, _ = trio
    copy = _hidden(exp, tmp_path, monkeypatch)
    e = load_experiment(copy)
    name = next(n for n, v in results.manifest(copy)["entries"].items() if v["kind"] == "cka")
    path = results.entry_path(copy, name)
    body = json.loads(gzip.decompress(path.read_bytes()))
    runs, eps, params = [e.run(r) for r in body["runs"]], body["epochs"], body["params"]
    assert results.lookup(e, "cka", runs, eps, params) is not None
    with monkeypatch.context() as m:  # a newer result layout: the old entry is not served
        m.setitem(results.SCHEMA, "cka", 99)
        assert results.lookup(e, "cka", runs, eps, params) is None
    body["result"]["layers"][next(iter(body["result"]["layers"]))][0] += 0.01
    path.write_bytes(gzip.compress(json.dumps(body).encode()))
    with pytest.warns(UserWarning, match="checksum"):
        assert results.lookup(e, "cka", runs, eps, params) is None


# ---------------------------------------------------------------- acceptance: a fresh clone

APP_CHECK = r"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app/Home.py", default_timeout=600)
at.session_state["experiment"] = "celeba-pair"
at.run()
at.switch_page("views/3_Training_dynamics.py")
at.session_state["tr_on"] = True
at.run()
specs = " ".join(c.proto.spec for c in at.get("plotly_chart"))
texts = [m.value for m in [*at.caption, *at.info, *at.error, *at.warning, *at.markdown]]
others = {}
for page in ("views/1_Feature_maps.py", "views/2_Weight_statistics.py", "views/4_Dataset.py"):
    at.switch_page(page)
    at.run()
    others[page] = {"exceptions": [e.value for e in at.exception],
                    "errors": [m.value for m in at.error]}
print(json.dumps({"exceptions": [e.value for e in at.exception], "specs": specs, "texts": texts,
                  "others": others}))
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``git clone`` of this checkout's HEAD, alone in a temporary folder (no ../shared)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    if not (ROOT / "checkpoints" / "celeba-pair" / "results" / "manifest.json").is_file():
        pytest.skip("checkpoints/celeba-pair ships no results")
    dst = tmp_path_factory.mktemp("fresh") / "fxcore"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True, timeout=300)
    return dst


def _run(clone: Path, argv: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, "FXCORE_CHECKPOINTS")}
    env["PYTHONPATH"] = str(clone)
    # Hang guard only: the shipped results make this a read, not a computation.
    return subprocess.run(
        [sys.executable, *argv], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )


def test_fresh_clone_compare_json_shows_the_control_from_shipped_results(clone) -> None:
    out = _run(clone, ["-m", "fxcore", "compare", "celeba-pair", "--json"])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    ctl = res["control"]
    assert ctl["runs"] == ["Smiling", "Smiling-control1"]
    assert ctl["cka"]["provenance"]["source"] == "shipped"
    for part in (res["cka"], ctl["cka"]):
        layer = next(iter(part["layers"]))
        assert len(part["low"][layer]) == len(part["layers"][layer]) == len(part["epochs"])
    assert set(res["accuracy"]["runs"]) == {"Smiling", "Male", "Smiling-control1"}
    assert res["attribution"]["shares"] and res["probes"]["runs"]


def test_fresh_clone_training_dynamics_page_draws_the_trio(clone) -> None:
    pytest.importorskip("streamlit")
    out = _run(clone, ["-c", APP_CHECK])
    assert out.returncode == 0, out.stderr[-3000:]
    page = json.loads(out.stdout.strip().splitlines()[-1])
    assert page["exceptions"] == []
    text = " ".join(page["texts"])
    assert "no control run" not in text and "Control: **Smiling-control1**" in text
    assert "computed on 128 CelebA validation faces" in text  # the provenance, shown
    specs = page["specs"]
    assert "L1 vs control" in specs and '"error_y"' in specs  # control bands, intervals
    assert "Share of attribution energy" in specs  # region shares
    assert "features → Smiling" in specs or "features \\u2192 Smiling" in specs  # probes
    for name, seen in page["others"].items():  # the other pages: a line at most, no traceback
        assert seen["exceptions"] == [], name
        assert all("\n" not in e for e in seen["errors"]), (name, seen["errors"])

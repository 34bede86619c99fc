"""Where an experiment's dataset is: --data-root / $FXCORE_DATA / by name beside the repository /
the recorded path, checked against the recorded fingerprint; and no machine path is committed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures_data import make_celeba_fixture

from fxcore.cli.main import main
from fxcore.compare.ship import ship_experiment
from fxcore.core.errors import DataUnavailable
from fxcore.data.inputs import DATA_ENV, load_split, locate_data
from fxcore.store.checkpoints import read_meta
from fxcore.store.runs import load_experiment

ROOT = Path(__file__).resolve().parents[1]
# An absolute path of some machine: POSIX home/work/temp folders, or a Windows drive.
MACHINE_PATH = re.compile(
    r"(?<![\w.])(/(?:work|home|tmp|Users|root|mnt|var|opt|private)/|[A-Z]:\\)"
)


def machine_paths(folder: Path) -> list[str]:
    """Every absolute machine path in an experiment folder: JSON files, metrics, READMEs and the
    metadata of every epoch file (what a committed experiment must not hold)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or ".fxcore-cache" in path.parts:
            continue
        if path.suffix == ".safetensors":
            text = json.dumps(read_meta(path))
        elif path.suffix in (".json", ".jsonl", ".md", ".txt"):
            text = path.read_text(errors="replace")
        else:
            continue
        found += [f"{path.relative_to(folder)}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    return found


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny CelebA experiment shipped inside a fake repository, its dataset folder)."""
    base = tmp_path_factory.mktemp("machine")
    data = make_celeba_fixture(base / "shared" / "data" / "faces-40", n=40, size=(45, 55))
    repo = base / "repo"
    (repo / "checkpoints").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    exp = repo / "checkpoints" / "tiny-celeba"
    argv = ["train", "--dataset", "celeba", "--data-root", str(data), "--model", "vgg-mini"]
    argv += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--pretrained", "no"]
    assert main([*argv, "--no-progress", "--out", str(exp)]) == 0
    ship_experiment(exp)
    return exp, data


def test_ship_records_no_machine_path(shipped) -> None:
    exp, data = shipped
    assert machine_paths(exp) == []
    info = json.loads((exp / "experiment.json").read_text())
    assert info["data_name"] == "faces-40"
    assert info["config"]["data_root"] == "../../../shared/data/faces-40"
    assert (exp / info["config"]["data_root"]).resolve() == data.resolve()


def test_committed_experiments_hold_no_machine_path() -> None:
    for exp in sorted(p.parent for p in (ROOT / "checkpoints").glob("*/experiment.json")):
        assert machine_paths(exp) == [], exp.name


def test_found_by_name_beside_the_repository(shipped, tmp_path, monkeypatch) -> None:
    exp, data = shipped
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    # A clone elsewhere: the recorded relative path leads nowhere, ../shared/data/<name> does.
    clone = tmp_path / "elsewhere" / "repo"
    shutil.copytree(exp.parents[1], clone)
    (tmp_path / "elsewhere" / "shared" / "data").mkdir(parents=True)
    shutil.copytree(data, tmp_path / "elsewhere" / "shared" / "data" / "faces-40")
    moved = load_experiment(clone / "checkpoints" / "tiny-celeba")
    loc = locate_data(moved.info, moved.path)
    assert loc.source == "search" and loc.path.parent.parent.name == "shared"
    assert len(load_split(moved.info, "val", where=moved.path)) == 8  # official partition


def test_env_and_data_root_come_first_and_are_checked(shipped, tmp_path, monkeypatch) -> None:
    exp, data = shipped
    e = load_experiment(exp)
    monkeypatch.chdir(tmp_path)
    copy = shutil.copytree(data, tmp_path / "mine" / "faces-40")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "mine"))  # a folder of datasets by name
    assert locate_data(e.info, e.path).path == copy
    monkeypatch.setenv(DATA_ENV, str(copy))  # the dataset folder itself
    assert locate_data(e.info, e.path).source == "$FXCORE_DATA"
    other = make_celeba_fixture(tmp_path / "other" / "faces-40", n=40, size=(45, 55), seed=3)
    monkeypatch.setenv(DATA_ENV, str(other))  # a different copy: skipped, the right one is used
    with pytest.warns(UserWarning, match="does not hold this experiment's data"):
        assert locate_data(e.info, e.path).path == data.resolve()


def test_no_copy_is_one_line_saying_how_to_provide_it(shipped, tmp_path, monkeypatch) -> None:
    exp, _ = shipped
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    clone = shutil.copytree(exp, tmp_path / "alone" / "checkpoints" / "tiny-celeba")
    other = make_celeba_fixture(tmp_path / "other" / "faces-40", n=40, size=(45, 55), seed=3)
    e = load_experiment(clone)
    with pytest.raises(DataUnavailable) as got:
        load_split(e.info, "val", where=e.path)
    msg = str(got.value)
    assert "\n" not in msg and "--data-root" in msg and DATA_ENV in msg and "faces-40" in msg
    monkeypatch.setenv(DATA_ENV, str(other))
    with pytest.raises(DataUnavailable, match="no copy matches"), pytest.warns(UserWarning):
        locate_data(e.info, e.path)


def test_old_experiments_with_an_absolute_path_still_open(shipped, tmp_path, monkeypatch) -> None:
    exp, data = shipped
    monkeypatch.delenv(DATA_ENV, raising=False)
    old = shutil.copytree(exp, tmp_path / "old" / "tiny-celeba")
    info = json.loads((old / "experiment.json").read_text())
    info["config"]["data_root"] = str(data.resolve())
    del info["data_name"]
    (old / "experiment.json").write_text(json.dumps(info))
    e = load_experiment(old)
    assert locate_data(e.info, e.path).path == data.resolve()

"""Following a training run: progress.json from the trainer, its states, the app and ``runs``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from fixtures_data import make_mnist_fixture

from fxcore.cli.main import build_parser, main
from fxcore.store import progress as progress_mod
from fxcore.store.progress import (
    PROGRESS_FILE,
    Progress,
    ProgressWriter,
    live_state,
    read_progress,
    train_command,
)
from fxcore.store.runs import experiment_stamp, load_experiment
from fxcore.train.config import config_from_args
from fxcore.train.loop import TrainConfig, TrainingInterrupted, train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the trainer and server helpers
from benchlib import release, start_trainer  # noqa: E402

APP_DIR = REPO / "app"
HOME = str(APP_DIR / "Home.py")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist_fixture(tmp_path_factory.mktemp("mnist-live"), n_train=480, n_test=40)


def mnist_cfg(mnist_dir: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        dataset="mnist",
        data_root=str(mnist_dir),
        attributes=["digit"],
        model="fcnn3",
        epochs=epochs,
        batch_size=16,
        loss="mse",
        pretrained="no",
        progress=False,
        max_train=48,
    )


# ---------------------------------------------------------------- progress.json


def test_writer_throttles_and_rank_other_than_0_writes_nothing(tmp_path: Path) -> None:
    cfg = asdict(TrainConfig(epochs=3))
    (tmp_path / f".{PROGRESS_FILE}.999.tmp").write_text("{")  # a trainer killed mid-write
    w = ProgressWriter(tmp_path, cfg, start=-1, interval_s=3600)
    first = read_progress(tmp_path)
    assert first is not None and first.state == "running" and first.done == -1
    assert first.pid == os.getpid() and first.epochs == 3
    w.epoch_start(1, batches=10)
    at_start = (tmp_path / PROGRESS_FILE).read_bytes()
    for b in range(1, 11):  # within the interval: no write at all
        w.step(b, 16 * b, 160)
    assert (tmp_path / PROGRESS_FILE).read_bytes() == at_start
    w.interval_s = 0.0
    w.step(5, 80, 160)
    p = read_progress(tmp_path)
    assert (p.epoch, p.batch, p.batches) == (1, 5, 10) and p.images_per_s > 0
    assert p.eta_s is not None and p.eta_s > 0
    assert p.fraction == pytest.approx(0.5 / 3)
    w.epoch_done(1, 160)
    assert read_progress(tmp_path).done == 1
    w.end("finished")
    p = read_progress(tmp_path)
    assert (p.state, p.eta_s, p.fraction) == ("finished", 0.0, pytest.approx(1 / 3))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic replace leaves no temp file

    other = tmp_path / "rank1"
    other.mkdir()
    w = ProgressWriter(other, cfg, start=-1, enabled=False)
    w.epoch_start(1, 10)
    w.end("finished")
    assert not (other / PROGRESS_FILE).exists()


def test_states_stale_by_time_and_by_dead_pid() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    now = 1_000_000.0
    here = Progress(state="running", updated=now - 5, host="this-host", pid=os.getpid())
    assert live_state(here, now, host="this-host") == "running"
    assert live_state(replace(here, pid=dead), now, host="this-host") == "stale"
    remote = replace(here, host="other-host", pid=dead)  # another machine's pid means nothing here
    assert live_state(remote, now, host="this-host") == "running"
    late = now + progress_mod.STALE_AFTER_S + 1
    assert live_state(remote, late, host="this-host") == "stale"
    for state in ("finished", "interrupted", "failed"):
        assert live_state(replace(here, state=state, pid=dead), late, "this-host") == state


def test_unreadable_progress_is_none(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    (tmp_path / PROGRESS_FILE).write_text('{"state": "runn')  # torn (never written so)
    assert read_progress(tmp_path) is None


def test_resume_command_reproduces_the_config(tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset="synthfaces",
        attributes=["Smiling", "Male"],
        model="vgg-mini",
        image_size=32,
        epochs=7,
        channels_last=True,
        progress=False,
        data_root=str(tmp_path / "my data"),
        max_val=9,
    )
    cmd = shlex.split(train_command(asdict(cfg), tmp_path / "exp"))
    assert cmd[:4] == ["python", "-m", "fxcore", "train"]
    args = build_parser().parse_args(cmd[3:])
    assert args.resume and Path(args.out) == (tmp_path / "exp").resolve()
    assert config_from_args(args) == cfg


def test_failed_and_interrupted_runs_say_so(mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import fxcore.train.loop as train_mod

    def boom(*a, **k):
        raise RuntimeError("evaluation exploded\nsecond line")

    monkeypatch.setattr(train_mod, "evaluate", boom)
    with pytest.raises(RuntimeError):
        train(mnist_cfg(mnist_dir, 2), tmp_path / "failed")
    p = read_progress(tmp_path / "failed")
    assert (p.state, p.error, p.done) == ("failed", "RuntimeError: evaluation exploded", 0)

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "evaluate", ctrl_c)
    with pytest.raises(TrainingInterrupted):
        train(mnist_cfg(mnist_dir, 2), tmp_path / "interrupted")
    assert read_progress(tmp_path / "interrupted").state == "interrupted"


def test_half_written_epoch_is_never_offered(tiny_root: Path, tmp_path: Path) -> None:
    import shutil

    sys.path.insert(0, str(APP_DIR))

    exp_dir = tmp_path / "tiny-synth"
    shutil.copytree(tiny_root / "tiny-synth", exp_dir)
    before = experiment_stamp(exp_dir)
    # What an atomic write of epoch 4 looks like while it is under way (or after SIGKILL).
    data = (exp_dir / "Male" / "epoch_003.safetensors").read_bytes()
    for run in ("Male", "Smiling"):
        (exp_dir / run / f".epoch_004.safetensors.{os.getpid()}.tmp").write_bytes(data[:500])
    exp = load_experiment(exp_dir)
    assert all(r.epochs() == [0, 1, 2, 3] and not r.bad_epochs() for r in exp.runs)
    assert experiment_stamp(exp_dir) == before  # the app does not even notice it
    (exp_dir / PROGRESS_FILE).write_text("{}")
    assert experiment_stamp(exp_dir) == before  # nor progress updates


# ---------------------------------------------------------------- a real trainer, the app, `runs`


def wait_saved(out: Path, proc: subprocess.Popen, epoch: int, timeout: float = 300) -> Progress:
    """Wait until the trainer has saved ``epoch`` and is still running."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p = read_progress(out)
        if p is not None and p.state == "running" and p.done >= epoch:
            return p
        assert proc.poll() is None, f"trainer exited ({proc.returncode}) before epoch {epoch}"
        time.sleep(0.05)
    raise TimeoutError(f"no epoch {epoch} within {timeout} s")


def home(root: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
    sys.path.insert(0, str(APP_DIR))
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def runs_json(root: Path) -> list[dict]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["runs", "--root", str(root), "--json"]) == 0
    return json.loads(buf.getvalue())


def test_app_and_runs_follow_a_real_training(mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("streamlit")
    root = tmp_path / "ck"
    out = root / "live"
    proc = start_trainer(mnist_dir, out, 12, tmp_path / "train.log", hold_at=1)
    try:
        wait_saved(out, proc, 1)  # held there, alive, while the app looks
        assert read_progress(out).done == 1
        at = home(root, monkeypatch)
        bars = [b.proto.text for b in at.get("progress")]
        assert len(bars) == 1 and "**live** is training: epoch " in bars[0], bars
        assert "/12 (" in bars[0] and "epochs 0..1 saved" in bars[0], bars
        row = at.dataframe[0].value.iloc[0]
        assert (row["state"], row["epochs"]) == ("running 1/12", "0–1")
        assert {(r["state"], r["epoch_of"]) for r in runs_json(root)} == {("running", "1/12")}
        release(proc)
        assert proc.wait(timeout=300) == 0, (tmp_path / "train.log").read_text()
    finally:
        proc.kill()
        proc.wait()
    at = home(root, monkeypatch)
    assert not at.get("progress")
    row = at.dataframe[0].value.iloc[0]
    assert row["state"] == "finished 12/12" and row["epochs"] == "0–12"
    assert [r["state"] for r in runs_json(root)] == ["finished"]


def test_killed_trainer_is_shown_stopped_with_its_resume_command(
    mnist_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("streamlit")
    root = tmp_path / "ck"
    out = root / "killed"
    proc = start_trainer(mnist_dir, out, 3, tmp_path / "train.log", hold_at=1)
    try:
        wait_saved(out, proc, 1)  # held after epoch 1: killed there, not after it has finished
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at = home(root, monkeypatch)
    assert not at.get("progress")
    done = read_progress(out).done
    assert done == 1
    warning = " ".join(w.value for w in at.warning)
    assert f"**killed** stopped at epoch {done} of 3" in warning and "killed?" in warning
    (cmd,) = [c.value for c in at.code if "--resume" in c.value]
    assert [(r["state"], r["epoch_of"]) for r in runs_json(root)] == [("stale", f"{done}/3")]
    # The command shown continues the run to its end.
    args = shlex.split(cmd)
    assert args[:3] == ["python", "-m", "fxcore"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, *args[1:]],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert read_progress(out).state == "finished"
    assert load_experiment(out).runs[0].epochs() == [0, 1, 2, 3]


def test_pages_offer_a_new_epoch_and_keep_the_picked_one(
    tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """While an experiment trains (a real ProgressWriter of this live process), a page's epoch
    picker gains the epoch that lands, and the user's choice stays."""
    import shutil

    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "ck"
    exp = root / "tiny-synth"
    shutil.copytree(tiny_root / "tiny-synth", exp)
    aside = tmp_path / "aside"
    aside.mkdir()
    for run in ("Smiling", "Male"):  # epoch 3 is not there yet
        shutil.move(exp / run / "epoch_003.safetensors", aside / f"{run}.safetensors")
    writer = ProgressWriter(exp, asdict(TrainConfig(epochs=3)), start=2)
    writer.epoch_start(3, batches=4)
    monkeypatch.setenv("FXCORE_CHECKPOINTS", str(root))
    sys.path.insert(0, str(APP_DIR))
    at = AppTest.from_file(HOME, default_timeout=180)
    at.session_state["experiment"] = "tiny-synth"
    at.run()
    at.switch_page("views/1_Feature_maps.py").run()
    assert not at.exception
    assert [b.proto.text for b in at.sidebar.get("progress")] == ["Training: epoch 3/3"]
    assert at.select_slider(key="fm_epoch").options == ["0", "1", "2"]
    at.select_slider(key="fm_epoch").set_value(1).run()
    for run in ("Smiling", "Male"):  # the trainer saves epoch 3 (atomically: a rename)
        os.replace(aside / f"{run}.safetensors", exp / run / "epoch_003.safetensors")
    at.run()
    assert not at.exception
    slider = at.select_slider(key="fm_epoch")
    assert (slider.options, slider.value) == (["0", "1", "2", "3"], 1)
    writer.end("finished")
    at.run()
    assert not at.sidebar.get("progress")

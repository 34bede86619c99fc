"""``make run``'s background demo trainer: an interrupted demo is resumed, one trainer at a time,
and SIGTERM stops it at a complete epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from conftest import TINY_SYNTH

from fxcore.cli import demo
from fxcore.store.runs import load_experiment
from fxcore.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
TINY = replace(TINY_SYNTH, epochs=2)


def test_an_interrupted_demo_is_missing_and_resumed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "DEMOS", {"tiny-demo": TINY})
    monkeypatch.setattr(demo, "compare", lambda exp, n_probe: None)
    train(replace(TINY, epochs=1), tmp_path / "tiny-demo")  # what a stopped trainer leaves
    assert demo.missing_demos(tmp_path) == ["tiny-demo"]
    assert demo.make_demo(tmp_path, demo.missing_demos(tmp_path)) == [tmp_path / "tiny-demo"]
    assert demo.missing_demos(tmp_path) == []
    assert load_experiment(tmp_path / "tiny-demo").runs[0].epochs_on_disk() == [0, 1, 2]


def test_one_trainer_at_a_time(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(demo, "DEMOS", {"tiny-demo": TINY})
    with demo.trainer_lock(tmp_path) as mine:
        assert mine
        assert demo.make_demo(tmp_path) == []
    assert "another process is training the demos" in capsys.readouterr().err
    assert not (tmp_path / "tiny-demo").exists()


SLOW_DEMO = """
import sys
from dataclasses import replace
sys.path.insert(0, sys.argv[2])
from conftest import TINY_SYNTH
from fxcore.cli import demo
demo.DEMOS = {"tiny-demo": replace(TINY_SYNTH, epochs=50)}
demo.make_demo(__import__("pathlib").Path(sys.argv[1]))
"""


def test_sigterm_stops_at_a_complete_epoch_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_DEMO, str(tmp_path), str(ROOT / "tests")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "tiny-demo" / "Male" / "metrics.jsonl"
    deadline = time.monotonic() + 600  # hang guard only
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert "resume" in err.lower(), err
    assert not list(tmp_path.rglob("*.tmp"))
    exp = load_experiment(tmp_path / "tiny-demo")
    done = [r.epochs_on_disk() for r in exp.runs]
    assert done[0] == done[1] and done[0][-1] >= 1  # both runs at the same complete epoch

"""Reliability: SIGKILL and Ctrl-C during training, full/read-only disks, concurrent explain.

The trainer runs as ``python -m fxcore train ... --resume`` on a tiny MNIST fixture (fcnn3, two
runs ``even``/``large``, 6 epochs of 200 images). An epoch takes ~30 ms and the interpreter start
~2 s, so kill points are placed by watching the process (its stderr progress bars and the files it
writes) rather than by wall-clock delays alone: a seeded plan picks the event and a seeded delay
after it. After every kill the files on disk must be consistent; the chain then resumes and must
end bit-identical to an uninterrupted run.

``make test`` runs a representative subset: one SIGKILL in each phase of training, one Ctrl-C and
four full/read-only-disk faults. The tests marked ``reliability`` (the seeded 20-point SIGKILL
chain, the whole Ctrl-C chain and the whole disk-fault matrix) run with ``make reliability``,
which prints a table of what ran.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import make_mnist_fixture
from safetensors.torch import load_file

from fxcore.cli.main import main
from fxcore.store import checkpoints
from fxcore.store.checkpoints import EPOCH_RE, read_header, read_jsonl, read_meta
from fxcore.store.progress import PROGRESS_FILE
from fxcore.store.runs import open_experiment
from fxcore.train.resume import complete_epoch

ROOT = Path(__file__).resolve().parents[1]
ATTRS = ["even", "large"]
EPOCHS = 6
KILL_POINTS = 20
KILL_SEED = int(os.environ.get("FXCORE_KILL_SEED", "8"))  # other seeds: other kill points
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TIMING_KEYS = {"seconds", "images_per_s"}  # the only metrics that may differ between runs


def train_args(data: Path, out: Path, epochs: int = EPOCHS) -> list[str]:
    return [
        "train",
        "--dataset",
        "mnist",
        "--data-root",
        str(data),
        "--attributes",
        *ATTRS,
        "--model",
        "fcnn3",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--lr",
        "0.001",
        "--pretrained",
        "no",
        "--workers",
        "0",
        "--out",
        str(out),
    ]


def train_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fxcore", *train_args(data, out), "--resume"]


@pytest.fixture(autouse=True)
def one_thread():
    """In-process training like the subprocesses (OMP_NUM_THREADS=1): immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist_fixture(tmp_path_factory.mktemp("mnist"), n_train=200, n_test=40)


@pytest.fixture(scope="module")
def reference(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same experiment trained once without interruption (same flags, same thread count)."""
    out = tmp_path_factory.mktemp("reference") / "exp"
    subprocess.run(train_cmd(mnist_dir, out), env=ENV, cwd=ROOT, check=True, capture_output=True)
    return out


# ---------------------------------------------------------------- invariants


def temp_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.tmp")) if out.is_dir() else []


def check_state(out: Path) -> dict[str, int]:
    """Assert what must hold after ANY crash; return each run's number of metrics rows.

    Every ``epoch_*``/``optim_*`` file on disk is complete (header, tensors and metadata load);
    epochs are 0..c without gaps; metrics rows are epochs 1..r, each backed by a checkpoint whose
    metadata holds the same row; at most one epoch (the one being written) is ahead of the rows.
    """
    rows_per_run: dict[str, int] = {}
    for attr in ATTRS:
        run_dir = out / attr
        if not run_dir.is_dir():
            rows_per_run[attr] = -1
            continue
        epochs = sorted(int(m.group(1)) for p in run_dir.iterdir() if (m := EPOCH_RE.match(p.name)))
        assert epochs == list(range(len(epochs))), f"{attr}: gap in epochs {epochs}"
        for e in epochs:
            path = run_dir / f"epoch_{e:03d}.safetensors"
            header, _ = read_header(path)
            tensors = load_file(str(path))
            assert set(tensors) == set(header) and read_meta(path)["epoch"] == e
        for path in run_dir.glob("optim_*.safetensors"):
            read_header(path)
            load_file(str(path))
        rows = read_jsonl(run_dir / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)), f"{attr}: {rows}"
        last = epochs[-1] if epochs else -1
        assert len(rows) <= max(last, 0), f"{attr}: metrics row without its checkpoint"
        assert last <= len(rows) + 1, f"{attr}: more than one epoch ahead of the metrics"
        for r in rows:
            assert read_meta(run_dir / f"epoch_{r['epoch']:03d}.safetensors")["metrics"] == r
        rows_per_run[attr] = len(rows)
    counts = [n for n in rows_per_run.values() if n >= 0]
    assert not counts or max(counts) - min(counts) <= 1, f"runs out of lockstep: {rows_per_run}"
    if (out / "experiment.json").is_file() and all((out / a / "run.json").is_file() for a in ATTRS):
        for run in open_experiment(out).runs:  # the reader's own validation (architecture etc.)
            assert run.bad_epochs() == {}, run.bad_epochs()
    return rows_per_run


def assert_same_as(out: Path, ref: Path) -> None:
    """Final state: every epoch bit-identical to the reference, same metrics, nothing left over."""
    assert complete_epoch(out, ATTRS) == EPOCHS
    assert temp_files(out) == []
    for attr in ATTRS:
        for name in [*(f"epoch_{e:03d}" for e in range(EPOCHS + 1)), f"optim_{EPOCHS:03d}"]:
            a = load_file(str(out / attr / f"{name}.safetensors"))
            b = load_file(str(ref / attr / f"{name}.safetensors"))
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a), f"{attr}/{name} differs"
        got, want = (
            read_jsonl(out / attr / "metrics.jsonl"),
            read_jsonl(ref / attr / "metrics.jsonl"),
        )
        strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in (*got, *want)]
        assert strip[: len(got)] == strip[len(got) :]
    assert all(not r.bad_epochs() for r in open_experiment(out).runs)


# ---------------------------------------------------------------- watching a trainer


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watched:
    """A trainer subprocess whose stderr and output folder are polled until a trigger fires."""

    def __init__(self, cmd: list[str], out: Path) -> None:
        self.out, self.t0 = out, time.perf_counter()
        self.before = {name: mtime for name, _size, mtime in snapshot(out)}
        # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
        # ignored: restore the default so Ctrl-C reaches the trainer however pytest was started
        # (e.g. `make test &` or `nohup`), as it does for a user at a terminal.
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_default_sigint,
        )
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        self.err = bytearray()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            while chunk := self.proc.stderr.read(65536):
                self.err += chunk
        except BlockingIOError:
            pass

    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    def run_until(self, ready, delay: float, sig: int, timeout: float = 600.0) -> bool:
        """Send ``sig`` ``delay`` s after ``ready(self)`` first holds; False if it exited first.

        ``timeout`` is a hang guard only (a whole run takes ~5 s here, ~20 s on a slow day).
        """
        fire_at = None
        while True:
            self._read()
            now = time.perf_counter()
            if self.proc.poll() is not None:
                break
            if fire_at is None and ready(self):
                fire_at = now + delay
            if fire_at is not None and now >= fire_at:
                self.proc.send_signal(sig)
                break
            assert now - self.t0 < timeout, f"trainer still running after {timeout} s"
            time.sleep(0.0002 if fire_at is None else 0)
        self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), True)
        self.err += self.proc.stderr.read()
        self.proc.stderr.close()
        return fire_at is not None

    def new_names(self, attr: str) -> list[str]:
        """Files in ``out/attr`` created or rewritten since the start (old ones never trigger)."""
        folder = self.out / attr
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        fresh = []
        for name in names:
            old = self.before.get(f"{attr}/{name}" if attr else name)
            try:
                if old is None or os.stat(folder / name).st_mtime_ns != old:
                    fresh.append(name)
            except FileNotFoundError:
                pass
        return fresh


# Triggers: predicates over the watched process, on what it has written or printed since it started.


def epoch_started(k: int):
    return lambda w: f"epoch {k}/{EPOCHS}:" in w.stderr()


def file_appears(attr: str, stem: str):
    """The temp file or the final file of ``<attr>/<stem>.safetensors`` exists."""
    final, temp = f"{stem}.safetensors", f".{stem}.safetensors."
    return lambda w: any(n == final or n.startswith(temp) for n in w.new_names(attr))


def rows_reach(attr: str, k: int):
    def ready(w: Watched) -> bool:
        if "metrics.jsonl" not in w.new_names(attr):
            return False
        try:
            return (w.out / attr / "metrics.jsonl").read_bytes().count(b"\n") >= k
        except FileNotFoundError:
            return False

    return ready


def metrics_rewritten(attr: str):
    """A resumed trainer rolls ``metrics.jsonl`` back (temp file, then rename) before training."""
    return lambda w: any(
        n.startswith((".metrics.jsonl.", "metrics.jsonl")) for n in w.new_names(attr)
    )


def init_started(w: Watched) -> bool:
    return any(n.startswith((".experiment.json", "experiment.json")) for n in w.new_names(""))


def after(seconds: float):
    return lambda w: time.perf_counter() - w.t0 >= seconds


# One kill in each phase, in an order that reaches every one (rollback needs a resumed trainer).
EACH_PHASE = ["init", "batch", "write", "between", "rollback", "startup"]


def plan_kill(rng: random.Random, done: int, kind: str | None = None) -> tuple[str, object, float]:
    """(name, trigger, delay) for the next kill, given the last complete epoch (-1 = fresh)."""
    if kind is None and done < 0:
        kind = rng.choice(["startup", "init", "init"])
    elif kind is None:
        kind = rng.choice(
            ["startup", "rollback", "batch", "batch", "write", "write", "write", "between"]
        )
    k = min(EPOCHS, done + 1 + rng.choice([0, 0, 1]))
    attr = rng.choice(ATTRS)
    if kind == "startup":  # interpreter start, torch import, data loading, resume rollback
        return kind, after(0.0), rng.uniform(0.05, 1.6)
    if kind == "init":  # experiment.json, run.json, optim_000 and epoch_000 of both runs
        return kind, init_started, rng.uniform(0.0, 0.03)
    if kind == "rollback":  # a resumed trainer trims its runs to the last complete epoch
        return kind, metrics_rewritten(attr), rng.uniform(0.0, 0.002)
    if kind == "batch":  # somewhere in epoch k's ~13 batches or its evaluation
        return kind, epoch_started(k), rng.uniform(0.0, 0.03)
    if kind == "write":  # inside one run's optimizer/checkpoint/metrics write sequence
        stem = rng.choice(["optim", "epoch"])
        return kind, file_appears(attr, f"{stem}_{k:03d}"), rng.uniform(0.0, 0.002)
    return kind, rows_reach(ATTRS[0], k), 0.0  # between: run 1 saved epoch k, run 2 not yet


def snapshot(out: Path) -> list[tuple[str, int, int]]:
    if not out.is_dir():
        return []
    return sorted(
        (str(p.relative_to(out)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and PROGRESS_FILE not in p.name
    )


def classify(out: Path, rows: dict[str, int], before: list, stderr: str) -> str:
    """Where the kill landed, judged from what it left behind."""
    if temp_files(out):
        return "checkpoint write (temp file on disk)"
    if not (out / "experiment.json").is_file() or any(
        not (out / a / "epoch_000.safetensors").is_file() for a in ATTRS
    ):
        return "startup" if snapshot(out) == before else "experiment init (epoch 0 files)"
    for attr in ATTRS:
        names = os.listdir(out / attr)
        ahead = f"{rows[attr] + 1:03d}.safetensors"
        if f"optim_{ahead}" in names or f"epoch_{ahead}" in names:
            return "checkpoint write (between one run's files)"
    if len(set(rows.values())) > 1:
        return "between runs (one run's epoch saved, the other's not)"
    started = [int(m) for m in re.findall(rf"epoch (\d+)/{EPOCHS}:", stderr)]
    if started and max(started) > max(rows.values()):
        return "training batch or evaluation"
    if snapshot(out) == before:
        return "startup"
    return "between epochs / after rollback"


def first_epoch_trained(stderr: str) -> int | None:
    found = re.search(rf"epoch (\d+)/{EPOCHS}:", stderr)
    return int(found.group(1)) if found else None


# ---------------------------------------------------------------- SIGKILL chain


def kill_chain(
    mnist_dir: Path,
    reference: Path,
    tmp_path: Path,
    kill_points: int,
    kinds: list[str] | None = None,
) -> None:
    """SIGKILL the resumed trainer ``kill_points`` times (at ``kinds`` in turn, else seeded
    choices), checking the files after every kill; the chain must end bit-identical."""
    rng = random.Random(KILL_SEED)
    phases: Counter[str] = Counter()
    cycle, kills, completed, starts = 0, 0, 0, 0
    out = tmp_path / f"cycle{cycle}"
    while kills < kill_points:
        starts += 1
        assert starts <= 4 * kill_points, f"only {kills} of {kill_points} kills fired: {phases}"
        done = complete_epoch(out, ATTRS) if (out / "experiment.json").is_file() else -1
        if done >= EPOCHS:  # this experiment is finished: check it, start another from scratch
            assert_same_as(out, reference)
            completed += 1
            cycle += 1
            out = tmp_path / f"cycle{cycle}"
            continue
        kind, ready, delay = plan_kill(rng, done, kinds[kills % len(kinds)] if kinds else None)
        before = snapshot(out)
        w = Watched(train_cmd(mnist_dir, out), out)
        fired = w.run_until(ready, delay, signal.SIGKILL)
        first = first_epoch_trained(w.stderr())
        # Resuming really resumes: the first epoch trained follows the last complete one.
        assert first is None or first == max(done, 0) + 1, (first, done, w.stderr()[-2000:])
        if not fired or w.proc.returncode == 0:
            assert w.proc.returncode == 0, w.stderr()[-2000:]
            check_state(out)
            continue
        kills += 1
        rows = check_state(out)
        phases[f"{classify(out, rows, before, w.stderr())}"] += 1
    w = Watched(train_cmd(mnist_dir, out), out)  # the last one runs to the end
    assert not w.run_until(lambda _w: False, 0.0, signal.SIGKILL)
    assert w.proc.returncode == 0, w.stderr()[-2000:]
    assert_same_as(out, reference)
    print(f"\nkill points: {kills}, experiments completed: {completed + 1}; phases:")
    for name, n in phases.most_common():
        print(f"  {n:3d}  {name}")
    assert len(phases) >= 3, phases  # the plan reaches several phases, not just the start-up


@pytest.mark.slow
def test_sigkill_in_each_phase_keeps_checkpoints_valid_and_resume_exact(
    mnist_dir: Path, reference: Path, tmp_path: Path
) -> None:
    kill_chain(mnist_dir, reference, tmp_path, len(EACH_PHASE), EACH_PHASE)


@pytest.mark.reliability
def test_sigkill_chain_keeps_checkpoints_valid_and_resume_exact(
    mnist_dir: Path, reference: Path, tmp_path: Path
) -> None:
    kill_chain(mnist_dir, reference, tmp_path, KILL_POINTS)


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("n_plans", [1, pytest.param(3, marks=pytest.mark.reliability)])
def test_sigint_saves_consistent_state_and_says_how_to_resume(
    n_plans: int, mnist_dir: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exp"
    # Mid-epoch; while run 2 writes its optimizer state; right after run 1's metrics row.
    plans = [
        (epoch_started(2), 0.012),
        (file_appears(ATTRS[1], "optim_004"), 0.0005),
        (rows_reach(ATTRS[0], 5), 0.0),
    ][:n_plans]
    last_done = -1
    for k, (ready, delay) in enumerate(plans):
        for _attempt in range(5):
            w = Watched(train_cmd(mnist_dir, out), out)
            fired = w.run_until(ready, delay, signal.SIGINT)
            # On a busy machine the watcher may wake after a fresh run already finished (a whole
            # run takes about a second here): that says nothing about Ctrl-C, start again.
            if k > 0 or w.proc.returncode != 0:
                break
            shutil.rmtree(out)
        assert fired, "trainer finished before the signal"
        err = w.stderr().strip().splitlines()[-1]
        assert w.proc.returncode == 130, w.stderr()[-2000:]
        assert err.startswith("error: interrupted") and "--resume" in err, err
        assert "Traceback" not in w.stderr()
        assert temp_files(out) == []
        rows = check_state(out)
        done = complete_epoch(out, ATTRS)
        assert f"epochs 0..{done} are saved" in err
        for attr in ATTRS:  # rolled back to the last epoch both runs finished
            assert rows[attr] == done
            assert sorted(p.name for p in (out / attr).glob("epoch_*")) == [
                f"epoch_{e:03d}.safetensors" for e in range(done + 1)
            ]
        assert done >= last_done
        last_done = done
    assert last_done >= n_plans - 1
    w = Watched(train_cmd(mnist_dir, out), out)
    assert not w.run_until(lambda _w: False, 0.0, signal.SIGINT)
    assert w.proc.returncode == 0 and first_epoch_trained(w.stderr()) == last_done + 1
    assert_same_as(out, reference)


# ---------------------------------------------------------------- full / read-only disk


class _FullDiskFile:
    """A file opened for writing on a full disk: the write lands half-way, then ENOSPC."""

    def __init__(self, fh) -> None:
        self.fh = fh

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def write(self, data) -> int:
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self) -> None:
        self.fh.flush()

    def fileno(self) -> int:
        return self.fh.fileno()


def inject_fault(monkeypatch: pytest.MonkeyPatch, kind: str, nth: int) -> list[int]:
    """From the ``nth`` write in fxcore.store.checkpoints on, every write fails like a full/read-only
    disk would (``enospc``: partial write then ENOSPC; ``erofs``: open fails with EROFS;
    ``eio``: the final rename fails with EIO). Returns a one-item list counting the writes.

    progress.json is left alone: the trainer replaces it every few seconds, so counting it would
    make the numbering depend on the machine's speed (and its writer gives up quietly anyway).
    """
    count = [0]
    real_open, real_replace = open, os.replace

    def fake_open(file, mode="r", *args, **kwargs):
        if not any(c in mode for c in "wax") or PROGRESS_FILE in str(file):
            return real_open(file, mode, *args, **kwargs)
        count[0] += 1
        if count[0] >= nth and kind == "erofs":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        fh = real_open(file, mode, *args, **kwargs)
        if count[0] >= nth and kind == "enospc":
            return _FullDiskFile(fh)
        return fh

    def fake_replace(src, dst, *args, **kwargs):
        if kind == "eio" and count[0] >= nth and PROGRESS_FILE not in str(dst):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        return real_replace(src, dst, *args, **kwargs)

    fake_os = types.SimpleNamespace(
        **{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}
    )
    fake_os.replace = fake_replace
    monkeypatch.setattr(checkpoints, "open", fake_open, raising=False)
    monkeypatch.setattr(checkpoints, "os", fake_os)
    return count


# Writes of a fresh 3-epoch training, in order: 1 .write-test, 2 experiment.json, 3-5 run.json,
# optim_000, epoch_000 of run 1, 6-8 the same for run 2, then per epoch and run: optim, epoch,
# metrics row (epoch 1: 9-14, epoch 2: 15-20, epoch 3: 21-26).
FAULTS = [("enospc", n) for n in (1, 2, 5, 9, 10, 11, 13, 14, 21, 26)] + [
    ("erofs", 1),
    ("erofs", 4),
    ("erofs", 16),
    ("eio", 3),
    ("eio", 19),
]
# make test: the folder check, a checkpoint write, a run.json/epoch write, a final rename.
QUICK_FAULTS = {("enospc", 1), ("enospc", 10), ("erofs", 16), ("eio", 19)}
REASONS = {
    "enospc": "No space left on device",
    "erofs": "Read-only file system",
    "eio": "Input/output error",
}


@pytest.mark.parametrize(
    "kind,nth",
    [f if f in QUICK_FAULTS else pytest.param(*f, marks=pytest.mark.reliability) for f in FAULTS],
)
def test_full_or_read_only_disk_gives_one_error_line_and_resumes(
    kind: str,
    nth: int,
    mnist_dir: Path,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "exp"
    args = [*train_args(mnist_dir, out, epochs=3), "--no-progress"]
    with monkeypatch.context() as m:
        count = inject_fault(m, kind, nth)
        assert main(args) == 1
    assert count[0] >= nth, f"stopped at write {count[0]}, before the fault at write {nth}"
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if not line.startswith("epoch ")]  # per-epoch summaries
    assert len(err) == 1 and err[0].startswith("error: ") and lines[-1] == err[0], lines
    assert REASONS[kind] in err[0] and str(out) in err[0], err[0]
    if nth == 1:  # the folder is checked before any data is loaded or anything is trained
        assert "cannot write checkpoints here" in err[0]
        assert list(out.iterdir()) == []
    assert temp_files(out) == []
    check_state(out)  # what was written is complete and consistent, as after a crash
    # With the disk fixed, --resume finishes the job exactly as an uninterrupted run would.
    assert main([*args, "--resume"]) == 0
    for attr in ATTRS:
        for e in range(4):
            a = load_file(str(out / attr / f"epoch_{e:03d}.safetensors"))
            b = load_file(str(reference / attr / f"epoch_{e:03d}.safetensors"))
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert temp_files(out) == [] and complete_epoch(out, ATTRS) == 3


@pytest.mark.parametrize("case", ["file", "under_file", "unwritable"])
def test_unusable_output_path(
    case: str,
    mnist_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """Real (not simulated) bad --out paths: one error line before any data is loaded."""
    target = tmp_path / "target"
    target.write_text("not a folder")
    if case == "unwritable":
        out = request.getfixturevalue("unwritable_dir")
    else:
        out = {"file": target, "under_file": target / "exp"}[case]
    assert main([*train_args(mnist_dir, out, epochs=1), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(out) in err[0], err
    assert target.read_text() == "not a folder"
    assert out == target or not out.exists()


def test_resume_point_survives_optimizer_pruning(mnist_dir: Path, tmp_path: Path) -> None:
    """Regression: only the last two optimizer states are kept; resume must still find its epoch."""
    out = tmp_path / "exp"
    assert main([*train_args(mnist_dir, out, epochs=4), "--no-progress"]) == 0
    assert not (out / ATTRS[0] / "optim_000.safetensors").exists()
    assert complete_epoch(out, ATTRS) == 4
    first = (out / ATTRS[0] / "epoch_001.safetensors").stat().st_mtime_ns
    assert main([*train_args(mnist_dir, out, epochs=5), "--no-progress"]) == 1  # no --resume
    assert main([*train_args(mnist_dir, out, epochs=5), "--no-progress", "--resume"]) == 0
    assert (out / ATTRS[0] / "epoch_001.safetensors").stat().st_mtime_ns == first  # not retrained
    assert complete_epoch(out, ATTRS) == 5


# ---------------------------------------------------------------- concurrent users


def test_concurrent_explain_on_shared_models_matches_single_user(tiny_root: Path) -> None:
    """4 threads explain different images at different epochs on SHARED model objects."""
    from fxcore.compare.analysis import explain
    from fxcore.explain.activations import active_hook_count, conv_layers
    from fxcore.store.probeset import probe_set

    exp = open_experiment(tiny_root / "tiny-synth")
    runs = exp.runs[:2]
    epochs = runs[0].epochs()
    models = {e: [(r.name, r.attribute, r.build_model(e)) for r in runs] for e in epochs}
    x, _ = probe_set(exp, 4)  # (4, 3, 32, 32)
    layers = conv_layers(models[epochs[0]][0][2])
    jobs = [(e, i, layers[(e + i) % len(layers)]) for e in epochs for i in range(len(x))]

    def flat(views) -> list:
        return [
            (
                v.run,
                v.probability,
                v.logit,
                v.channel_mean,
                v.top_channels,
                v.top_maps,
                v.cam_positive,
                v.cam_negative,
            )
            for v in views
        ]

    expected = {job: flat(explain(models[job[0]], x[job[1] : job[1] + 1], job[2])) for job in jobs}
    results: dict[tuple, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def user(seed: int) -> None:
        order = list(jobs) * 2
        random.Random(seed).shuffle(order)
        try:
            barrier.wait()
            for k, (e, i, layer) in enumerate(order):
                results[(seed, k, e, i, layer)] = flat(explain(models[e], x[i : i + 1], layer))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 4 * 2 * len(jobs)
    for (_s, _k, e, i, layer), got in results.items():
        for a, b in zip(got, expected[(e, i, layer)], strict=True):
            for u, v in zip(a, b, strict=True):
                assert np.array_equal(np.asarray(u), np.asarray(v)), (e, i, layer)
    for views in models.values():
        for _, _, model in views:
            assert active_hook_count(model) == 0 and not model.training

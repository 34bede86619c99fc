"""What the benchmark scripts share: timing, the machine, and serving the app to a browser.

Imported by the scripts in this folder (run as scripts, so the folder is on sys.path) and by the
browser test.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (apt-get install chromium)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def best_time(fn: Callable[[], object], repeat: int, warmup: bool = False) -> float:
    """Best wall time of ``repeat`` calls (the least disturbed by other work on the machine)."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict[str, str]:
    """CPU model, cores, memory, Python/torch versions: printed with the results."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    try:
        import torch

        torch_v = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_v = "no torch"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "torch": torch_v,
        "os": platform.platform(),
    }


def has_experiments(root: Path) -> bool:
    return root.is_dir() and any((p / "experiment.json").is_file() for p in root.iterdir())


def demo_root(candidates: list[Path]) -> tuple[Path, str]:
    """The first candidate holding experiments, else ``fxcore demo`` into the last; and how."""
    for d in candidates:
        if has_experiments(d):
            return d, f"existing {d}"
    out = candidates[-1]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fxcore", "demo", "--out", str(out)], cwd=ROOT, check=True
    )
    return out, f"created {out} in {time.perf_counter() - t0:.0f} s"


def face_experiment(root: Path) -> str:
    """The first experiment under ``root`` with face images (for uploads and Grad-CAM)."""
    sys.path.insert(0, str(ROOT))
    from fxcore.store.runs import list_experiments

    faces = [
        e.name for e in list_experiments(root) if e.info.get("dataset") not in ("mnist", "imported")
    ]
    if not faces:
        raise SystemExit(f"no face experiment under {root}")
    return faces[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Poll ``/_stcore/health`` until it answers ok; fail fast if the server exits."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s")


def server_command(port: int) -> list[str]:
    """``streamlit run app/Home.py`` on 127.0.0.1:``port``, headless, no usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/Home.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]


def is_script_finished(payload: object) -> bool:
    """Whether a websocket frame from the server is its ``script_finished`` message."""
    if not isinstance(payload, (bytes, bytearray)):
        return False
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    try:
        msg.ParseFromString(bytes(payload))
    except Exception:  # noqa: BLE001 - not a ForwardMsg: ignore
        return False
    return msg.WhichOneof("type") == "script_finished"


# Run in the child instead of ``-m fxcore`` when a test holds the trainer at an epoch: after
# progress.json says the epoch is saved, it waits while the gate file exists (no race with a fast
# machine finishing every epoch before the test looks).
_HELD = """
import sys, time
from pathlib import Path
from fxcore.store import progress
from fxcore.cli.main import main
gate, at = Path(sys.argv[1]), int(sys.argv[2])
saved = progress.ProgressWriter.epoch_done
def held(self, epoch, images):
    saved(self, epoch, images)
    while epoch == at and gate.exists():
        time.sleep(0.02)
progress.ProgressWriter.epoch_done = held
raise SystemExit(main(sys.argv[3:]))
"""


def start_trainer(
    data: Path, out: Path, epochs: int, log: Path | None = None, hold_at: int | None = None
) -> subprocess.Popen:
    """A real ``python -m fxcore train`` in the background: the MNIST MLP on the IDX files in
    ``data`` (240 training images, a second or two per epoch), in its own process group.

    With ``hold_at`` the trainer stops after saving that epoch, still running, until
    ``release(proc)`` (or a kill)."""
    args = [
        "train",
        "--dataset",
        "mnist",
        "--data-root",
        str(data),
        "--attributes",
        "digit",
        "--model",
        "fcnn3",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--loss",
        "mse",
        "--pretrained",
        "no",
        "--no-progress",
        "--max-train",
        "240",
        "--out",
        str(out),
    ]
    gate = None
    if hold_at is None:
        cmd = [sys.executable, "-m", "fxcore", *args]
    else:
        gate = Path(log or out).with_name(f".{out.name}.hold")
        gate.parent.mkdir(parents=True, exist_ok=True)
        gate.touch()
        cmd = [sys.executable, "-c", _HELD, str(gate), str(hold_at), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.gate = gate  # type: ignore[attr-defined]
    return proc


def release(proc: subprocess.Popen) -> None:
    """Let a trainer held by ``start_trainer(..., hold_at=N)`` go on."""
    gate = getattr(proc, "gate", None)
    if gate is not None:
        gate.unlink(missing_ok=True)

"""What the app benchmarks share: the demo experiments to serve, a free port, a health wait.

Imported by ``bench_app.py`` and ``load_app.py`` (run as scripts, so this folder is on sys.path).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (apt-get install chromium)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def has_experiments(root: Path) -> bool:
    return root.is_dir() and any((p / "experiment.json").is_file() for p in root.iterdir())


def demo_root(candidates: list[Path]) -> tuple[Path, str]:
    """The first candidate holding experiments, else ``fxcore demo`` into the last; and how."""
    for d in candidates:
        if has_experiments(d):
            return d, f"existing {d}"
    out = candidates[-1]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fxcore", "demo", "--out", str(out)], cwd=ROOT,
                   check=True)  # fmt: skip
    return out, f"created {out} in {time.perf_counter() - t0:.0f} s"


def face_experiment(root: Path) -> str:
    """The first experiment under ``root`` with face images (for uploads and Grad-CAM)."""
    sys.path.insert(0, str(ROOT))
    from fxcore.runs import list_experiments

    faces = [e.name for e in list_experiments(root) if e.info.get("dataset") not in
             ("mnist", "imported")]  # fmt: skip
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

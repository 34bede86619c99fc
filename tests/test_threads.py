"""OpenMP settings that share a busy CPU: set before torch loads, never over the user's choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fxcore.core.threads import available_cores, configure

ROOT = Path(__file__).resolve().parents[1]


def _env_after_import(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    code = (
        "import os, sys, fxcore; import torch;"
        "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], torch.get_num_threads())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,  # hang guard
    ).stdout.split()
    return {"policy": out[0], "threads": out[1], "torch": out[2]}


def test_importing_fxcore_sets_a_passive_wait_and_the_available_cores() -> None:
    got = _env_after_import()
    assert got["policy"] == "PASSIVE"
    assert got["threads"] == str(available_cores())
    assert got["torch"] == got["threads"]  # torch loaded after fxcore and took the setting


def test_a_users_choice_is_kept() -> None:
    got = _env_after_import(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1")
    assert got == {"policy": "ACTIVE", "threads": "1", "torch": "1"}
    env = {"OMP_NUM_THREADS": "3"}
    configure(env)
    assert env == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}


def test_cores_follow_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")  # half a core: still one thread
    assert available_cores(quota) == 1
    quota.write_text(f"{100000 * (affinity + 4)} 100000\n")  # more than affinity allows
    assert available_cores(quota) == affinity
    quota.write_text("max 100000\n")
    assert available_cores(quota) == affinity
    assert available_cores(tmp_path / "absent") == affinity

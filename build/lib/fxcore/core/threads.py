"""CPU threading that shares a busy machine instead of collapsing on it.

Torch's CPU kernels run on OpenMP threads. With OpenMP's default wait policy an idle worker spins
for a while before sleeping, so when other processes share the cores every parallel region turns
into threads burning CPU waiting for a preempted sibling: measured on a 2-core machine beside two
busy loops, one training epoch took 78 s of wall and 72 s of CPU time against 9-14 s / 13-19 s
idle. A passive wait policy (sleep at once) keeps the idle speed and shares under load, and a thread
count taken from the cores this process may really use (its CPU affinity and cgroup quota, not the
host's core count) avoids oversubscribing a container.

OpenMP reads these variables once, when the runtime is loaded (first ``import torch``), so
:func:`configure` runs from ``fxcore/__init__.py``, before any fxcore module imports torch. A value
the user set is always kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process can use: its CPU affinity, capped by a cgroup v2 CPU quota if any."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: affinity alone
    return max(1, cores)


def configure(environ: os._Environ | dict[str, str] = os.environ) -> None:
    """Set the OpenMP wait policy and thread count unless the user already chose them."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    environ.setdefault("OMP_NUM_THREADS", str(available_cores()))

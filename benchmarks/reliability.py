"""Run the long reliability checks and print one table: ``make reliability``.

The seeded 20-point SIGKILL chain, the whole Ctrl-C chain and the whole full/read-only-disk matrix
(the tests marked ``reliability`` in ``tests/test_reliability.py``; ``make test`` runs one kill per
training phase, one Ctrl-C and four disk faults of them). Each check is a real pytest test, run here
in-process; the table lists every check with its cases, how many passed and how long it took.
Exits non-zero when any case failed.

    python benchmarks/reliability.py [extra pytest arguments]
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from benchlib import machine

ROOT = Path(__file__).resolve().parents[1]


class Collector:
    """Outcome and duration of each test, grouped by test function."""

    def __init__(self) -> None:
        self.checks: dict[str, list] = defaultdict(lambda: [0, 0, 0.0, []])  # n, passed, s, failed

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" and report.outcome != "passed" or report.when == "call":
            name, _, param = report.nodeid.split("::")[-1].partition("[")
            row = self.checks[name]
            row[0] += 1
            row[1] += report.outcome == "passed"
            row[2] += report.duration
            if report.outcome != "passed":
                row[3].append(param.rstrip("]") or report.outcome)


def table(checks: dict[str, list]) -> str:
    head = ("check", "cases", "passed", "seconds", "failed cases")
    cells = [head] + [
        (name, str(n), str(ok), f"{s:.0f}", ", ".join(bad) or "-")
        for name, (n, ok, s, bad) in checks.items()
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    info = machine()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    print(
        f"fxcore reliability, {started}: {info['cpu']}, {info['cores']} cores, "
        f"{info['memory']}, {info['torch']}",
        flush=True,
    )
    collector = Collector()
    t0 = time.perf_counter()
    code = pytest.main(
        [
            "-m",
            "reliability",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_reliability.py",
            *argv,
        ],
        plugins=[collector],
    )
    total = time.perf_counter() - t0
    print(f"\n{table(collector.checks)}\n")
    cases = sum(r[0] for r in collector.checks.values())
    passed = sum(r[1] for r in collector.checks.values())
    print(f"reliability: {total / 60:.1f} min")
    print(f"reliability: {passed} passed, {cases - passed} failed")
    if not cases:
        print("reliability: no check ran", file=sys.stderr)
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Benchmark hostile uploads: time and peak memory of the upload path on the ~330 fuzz cases.

The cases are the test suite's (``tests/upload_cases.py``: random bytes, every format and mode,
truncations, bit flips, decompression bombs, 40-megapixel images, EXIF orientations); the test
checks what each case gives, this script how long it takes and how much memory it needs. Targets:
no case slower than 5 s, none needing more than 1024 MB of extra peak memory (a 40-megapixel RGBA
upload legitimately needs ~0.8 GB while decoding), a declared bomb refused in under 0.5 s.

    python benchmarks/bench_uploads.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the shared case generator

from upload_cases import measure, planned, prepare  # noqa: E402

MAX_SECONDS = 5.0
MAX_PEAK_MB = 1024
BOMB_SECONDS = 0.5


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    groups: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # n, total s, max s, max MB
    slowest, heaviest = ("", 0.0), ("", 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case, crop in planned():
            _result, seconds, peak = measure(lambda c=case, k=crop: prepare(c, k))
            g = groups[case.group]
            g[0] += 1
            g[1] += seconds
            g[2], g[3] = max(g[2], seconds), max(g[3], peak)
            name = f"{case.group}/{case.name}"
            slowest = max(slowest, (name, seconds), key=lambda t: t[1])
            heaviest = max(heaviest, (name, peak), key=lambda t: t[1])
    print(f"{'group':12} {'cases':>5} {'mean s':>7} {'max s':>6} {'max MB':>7}")
    for group, (n, total, sec, mb) in groups.items():
        print(f"{group:12} {n:5d} {total / n:7.3f} {sec:6.2f} {mb:7.0f}")
    n_cases = sum(g[0] for g in groups.values())
    bomb_s = groups["bomb"][2]
    rows = [
        {
            "bench": "uploads",
            "what": f"slowest of {n_cases} fuzzed uploads",
            "value": f"{slowest[1]:.2f} s ({slowest[0]})",
            "target": f"<= {MAX_SECONDS:.0f} s",
            "ok": slowest[1] <= MAX_SECONDS,
        },
        {
            "bench": "uploads",
            "what": "  largest extra peak memory of one upload",
            "value": f"{heaviest[1]:.0f} MB ({heaviest[0]})",
            "target": f"<= {MAX_PEAK_MB} MB",
            "ok": heaviest[1] <= MAX_PEAK_MB,
        },
        {
            "bench": "uploads",
            "what": "  slowest declared-bomb refusal",
            "value": f"{bomb_s:.3f} s",
            "target": f"<= {BOMB_SECONDS} s",
            "ok": bomb_s <= BOMB_SECONDS,
        },
    ]
    result = {
        "groups": {
            k: dict(zip(["cases", "total_s", "max_s", "max_mb"], v, strict=True))
            for k, v in groups.items()
        },
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

"""Benchmark following a training run: what one auto-refresh of Home reads while a run trains.

A real ``python -m fxcore train`` (the MNIST MLP on a generated IDX fixture, many short epochs)
runs in the background into a temporary checkpoints root. Home is run with streamlit's AppTest
once to warm its caches, then ``--refreshes`` more times, ``live.REFRESH_S`` apart, as the
fragment's timer would (each run is the WHOLE Home script: an upper bound on the fragment alone).
During each refresh every file opened under the root is counted by kind with the bytes read from
it (``open`` is wrapped), and every safetensors tensor load (``safe_open``, ``load_file``) too.
Target: no checkpoint tensor read at all (epoch files: at most their JSON header, only after a
new epoch was saved).

    python benchmarks/bench_live.py [--refreshes 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import os
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated MNIST fixture
sys.path.insert(0, str(ROOT / "app"))
from benchlib import start_trainer  # noqa: E402


class Reads:
    """Files opened under ``root`` during a refresh: count and bytes read, per kind."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.opens: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.tensor_loads = 0
        self.beyond_header = 0  # bytes read past an epoch file's JSON header

    def reset(self) -> None:
        self.opens.clear()
        self.bytes.clear()
        self.tensor_loads = self.beyond_header = 0


class _Counted:
    """A file object that adds what is read from it to ``Reads``."""

    def __init__(self, fh, kind: str, reads: Reads, limit: int | None) -> None:
        self._fh, self._kind, self._reads, self._limit, self._pos = fh, kind, reads, limit, 0

    def read(self, *a):
        data = self._fh.read(*a)
        self._reads.bytes[self._kind] += len(data)
        if self._limit is not None:
            past = max(0, self._pos + len(data) - max(self._limit, self._pos))
            self._reads.beyond_header += past
        self._pos += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


def install(reads: Reads) -> None:
    """Count opens under the root (``builtins.open``/``io.open``) and safetensors tensor loads."""
    real_open = io.open

    def header_end(path: str) -> int:
        with real_open(path, "rb") as fh:
            head = fh.read(8)
        return 8 + struct.unpack("<Q", head)[0] if len(head) == 8 else 0

    def counting_open(file, mode="r", *a, **k):
        fh = real_open(file, mode, *a, **k)
        path = os.fspath(file) if isinstance(file, str | os.PathLike) else ""
        if not path.startswith(reads.root) or any(c in mode for c in "wax+"):
            return fh
        kind = Path(path).suffix or Path(path).name
        reads.opens[kind] += 1
        limit = header_end(path) if kind == ".safetensors" else None
        return _Counted(fh, kind, reads, limit)

    builtins.open = io.open = counting_open
    import safetensors
    import safetensors.torch

    for mod, name in ((safetensors, "safe_open"), (safetensors.torch, "load_file")):
        real = getattr(mod, name)

        def counted(*a, _real=real, **k):
            reads.tensor_loads += 1
            return _real(*a, **k)

        setattr(mod, name, counted)


def bench(tmp: Path, refreshes: int) -> dict:
    from fixtures_data import make_mnist_fixture
    from live import REFRESH_S
    from streamlit.testing.v1 import AppTest

    from fxcore.store.progress import read_progress

    root = tmp / "checkpoints"
    out = root / "live-mnist"
    data = make_mnist_fixture(tmp / "mnist", n_train=480, n_test=40)
    proc = start_trainer(data, out, epochs=200)
    try:
        end = time.monotonic() + 300
        while (p := read_progress(out)) is None or p.done < 1:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the trainer did not save epoch 1")
            time.sleep(0.1)
        os.environ["FXCORE_CHECKPOINTS"] = str(root)
        reads = Reads(root)
        install(reads)
        at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        per = []
        for _ in range(refreshes):
            time.sleep(REFRESH_S)
            before = read_progress(out).done
            reads.reset()
            t0 = time.perf_counter()
            at.run()
            seconds = time.perf_counter() - t0
            assert not at.exception, [e.value for e in at.exception]
            row = {
                "seconds": seconds,
                "opens": dict(reads.opens),
                "bytes": dict(reads.bytes),
                "tensor_loads": reads.tensor_loads,
                "beyond_header": reads.beyond_header,
                "epochs_saved": before,
                "state": at.dataframe[0].value.iloc[0]["state"],
            }
            per.append(row)
            print(
                f"  refresh: {seconds:.2f} s, epochs saved {before}, opens {row['opens']}, "
                f"tensor loads {reads.tensor_loads}, bytes past headers {reads.beyond_header}"
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return {"refreshes": per, "refresh_s": REFRESH_S}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refreshes", type=int, default=6)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # no "No runtime found" lines
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_all's stop: clean up first
    with tempfile.TemporaryDirectory(prefix="fxcore-bench-live-") as tmp:
        res = bench(Path(tmp), args.refreshes)
    per = res["refreshes"]
    loads = sum(r["tensor_loads"] for r in per)
    past = sum(r["beyond_header"] for r in per)
    grew = sum(1 for a, b in zip(per, per[1:]) if b["epochs_saved"] > a["epochs_saved"])
    js = max(sum(v for k, v in r["opens"].items() if k.startswith(".json")) for r in per)
    heads = max(r["opens"].get(".safetensors", 0) for r in per)
    rows = [
        {
            "bench": "live",
            "what": "Home auto-refresh while a run trains: tensors read",
            "value": f"{loads} loads, {past} B past headers ({len(per)} refreshes, {grew} new epochs)",
            "target": "0",
            "ok": loads == 0 and past == 0,
        },
        {
            "bench": "live",
            "what": "  files read per refresh, max: JSON(L) / epoch headers",
            "value": f"{js} / {heads}",
            "target": "(info)",
            "ok": None,
        },
        {
            "bench": "live",
            "what": "  one refresh (whole Home script, AppTest), slowest",
            "value": f"{max(r['seconds'] for r in per):.2f} s",
            "target": "(info)",
            "ok": None,
        },
    ]
    result = {**res, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

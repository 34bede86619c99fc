"""Benchmark ``fxcore compare`` with a control run (issue 16's performance budget).

Budget: 1 control, 256 probes, 200 bootstrap resamples, Grad-CAM at every block's last conv plus
the input-level method, on the celeba-10k vgg-mini pair (7 epochs): <= 3 min cold on a 2-core
machine; the Training dynamics page then reads the cache and draws in <= 1 s.

The experiment is copied to a temp folder so the cold time is cold (and the user's cache stays as
it is). Without such an experiment (``--experiment``; it needs a control run, e.g. from
``fxcore train ... --controls 1``) the row says so. ``--quick`` trains a tiny SynthFaces pair with
a control and times small sizes, to check the script, not to measure.

    python benchmarks/bench_compare.py [--experiment checkpoints/celeba-vgg-mini] [--quick]
                                       [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "app"))

TARGET_S, PAGE_TARGET_S = 180.0, 1.0


def draw_seconds(res: dict, names: list[str]) -> float:
    """Time to build every chart of the page's trustworthy section from a cached result."""
    import trust_view

    t0 = time.perf_counter()
    layers = list(res["cka"]["layers"])
    trust_view.cka_vs_control(res, layers, -1)
    wkeys = [f"{k}.weight" for k in layers if f"{k}.weight" in res["dynamics"]["layers"]]
    trust_view.cosine_vs_control(res, "update_cosine", wkeys, -1, "update cosine")
    att = res.get("attribution") or {}
    if att.get("shares"):
        region = att["regions"][0]
        trust_view.shares_figure(att, names, region, "with", -1)
        trust_view.mean_map_figures(att, names, att["sources"][0], "with", -1, region)
    if res.get("probes"):
        trust_view.probe_figures(res["probes"], names, res["probes"]["attributes"][0])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", type=Path, default=ROOT / "checkpoints" / "celeba-vgg-mini")
    ap.add_argument("--probe", type=int, default=256)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from fxcore.compare import control as trust
    from fxcore.store.runs import load_experiment

    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from fxcore.cli.demo import SYNTH
            from fxcore.train.loop import train

            cfg = replace(
                SYNTH,
                image_size=32,
                epochs=1,
                synth_train=64,
                max_val=32,
                controls=1,
                progress=False,
            )
            src = train(cfg, Path(tmp) / "quick")
            probe, boot = 16, 20
        else:
            src, probe, boot = args.experiment, args.probe, args.bootstrap
        exp_ok = (src / "experiment.json").is_file() and any(
            r.is_control for r in load_experiment(src).runs
        )
        if not exp_ok:
            rows = [
                {
                    "bench": "compare",
                    "what": f"compare + control, {probe} probes, {boot} boot",
                    "value": f"skipped: {src} has no control run (train with --controls 1)",
                    "target": f"<= {TARGET_S:.0f} s",
                    "ok": None,
                }
            ]
            result = {"rows": rows}
        else:
            work = Path(tmp) / "copy"
            shutil.copytree(src, work, ignore=shutil.ignore_patterns(".fxcore-cache", "optim_*"))
            exp = load_experiment(work)
            t0 = time.perf_counter()
            res = trust.compare(exp, n_probe=probe, n_resamples=boot)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = trust.compare(load_experiment(work), n_probe=probe, n_resamples=boot)
            warm = time.perf_counter() - t0
            names = [*res["runs"], res["control"]["runs"][1]]
            draw = draw_seconds(res, names)
            epochs = len(res["cka"]["epochs"])
            rows = [
                {
                    "bench": "compare",
                    "what": f"compare + 1 control, {probe} probes, {boot} boot, "
                    f"{epochs} epochs, all blocks + input method (cold)",
                    "value": f"{cold:.0f} s",
                    "target": f"<= {TARGET_S:.0f} s",
                    "ok": cold <= TARGET_S,
                },
                {
                    "bench": "compare",
                    "what": "  page: cached result read + charts built",
                    "value": f"{warm + draw:.2f} s",
                    "target": f"<= {PAGE_TARGET_S:.0f} s",
                    "ok": warm + draw <= PAGE_TARGET_S,
                },
            ]
            result = {"rows": rows, "cold_s": cold, "warm_s": warm, "draw_s": draw}
    for r in result["rows"]:
        print(f"{r['what']}: {r['value']} (target {r['target']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

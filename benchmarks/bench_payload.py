"""Benchmark the Weight statistics page's figures: Plotly JSON bytes and build time per VGG-19 tensor.

For every weight tensor of VGG-19 (torchvision shapes, one-logit head) a random per-weight mean
array stands in for ``mean_var``'s output ("once stats exist"). One figure is what the page does
with it: ``fxcore.measures.stats.layout_2d`` -> ``pool_to_budget(budget=(512, 512))`` -> the app's
``ui.heatmap_figure`` -> ``fig.to_json()`` (the JSON Streamlit sends to the browser). Its time is
the best of ``--repeat`` builds, for both pooling modes (mean, maxabs). The naive figure is
``go.Heatmap(z=<full 4096x4096 map>)`` of ``classifier.3.weight``, serialised the same way.

    python benchmarks/bench_payload.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchlib import best_time  # noqa: E402

TARGET_BYTES, TARGET_S = 2_000_000, 0.2
NAIVE_KEY = "classifier.3.weight"


def figure_builder():
    """The app's heatmap builder (``app/ui.py``), or a stand-in with the same encoding."""
    import plotly.graph_objects as go

    try:
        sys.path.insert(0, str(ROOT / "app"))
        os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # no "No runtime found" lines
        from ui import heatmap_figure

        return heatmap_figure, "app/ui.py heatmap_figure"
    except Exception as exc:  # noqa: BLE001 - the app is optional for this measurement
        print(f"note: app/ui.py not importable ({exc}); using a stand-in", file=sys.stderr)

    def stand_in(z, *, zmin=None, zmax=None, block=(1, 1), **_):
        x = (np.arange(z.shape[1]) * block[1]).astype(np.int32)
        y = (np.arange(z.shape[0]) * block[0]).astype(np.int32)
        return go.Figure(go.Heatmap(z=np.asarray(z, np.float32), x=x, y=y, zmin=zmin, zmax=zmax))

    return stand_in, "stand-in go.Heatmap(float32)"


def build(mean: np.ndarray, mode: str, heatmap_figure) -> tuple[str, tuple[int, int], tuple]:
    """What the page does for one tensor's mean map: the JSON sent, the block and the map shape."""
    from fxcore.measures.stats import layout_2d, pool_to_budget

    pooled, block = pool_to_budget(layout_2d(mean), (512, 512), mode)
    finite = np.abs(pooled[np.isfinite(pooled)])
    hi = float(finite.max()) if finite.size else 1.0
    fig = heatmap_figure(
        pooled,
        title="mean",
        zmin=-hi,
        zmax=hi,
        colorscale="RdBu_r",
        block=block,
        value_name="mean",
        axis_titles=False,
    )
    return fig.to_json(), block, pooled.shape


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-naive", action="store_true", help="skip the 4096x4096 naive figure")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import plotly.graph_objects as go
    import torch

    from fxcore.models.nets import build_model

    heatmap_figure, builder = figure_builder()
    with torch.device("meta"):
        shapes = {k: tuple(p.shape) for k, p in build_model("vgg19", 1).named_parameters()}
    keys = [k for k in shapes if k.endswith("weight")]
    rng = np.random.default_rng(0)
    per: dict[str, dict] = {}
    print(f"figure builder: {builder}")
    print(
        f"{'tensor':<22}{'shape':<20}{'map':>12}{'block':>8}{'bytes':>11}"
        f"{'mean s':>9}{'maxabs s':>10}"
    )
    for key in keys:
        stat = rng.standard_normal(shapes[key], dtype=np.float32) * 0.01
        payload, block, mshape = build(stat, "mean", heatmap_figure)
        row = {"shape": shapes[key], "map": mshape, "block": block, "bytes": len(payload)}
        for mode in ("mean", "maxabs"):
            row[f"time_{mode}_s"] = best_time(
                lambda s=stat, m=mode: build(s, m, heatmap_figure), args.repeat
            )
        per[key] = row
        print(
            f"{key:<22}{str(shapes[key]):<20}{'x'.join(map(str, mshape)):>12}"
            f"{'x'.join(map(str, block)):>8}{row['bytes']:>11,}{row['time_mean_s']:>9.3f}"
            f"{row['time_maxabs_s']:>10.3f}"
        )

    naive = None
    if not args.no_naive:
        stat = rng.standard_normal(shapes[NAIVE_KEY], dtype=np.float32) * 0.01
        t0 = time.perf_counter()
        payload = go.Figure(go.Heatmap(z=stat)).to_json()
        naive = {"key": NAIVE_KEY, "bytes": len(payload), "time_s": time.perf_counter() - t0}
        del payload
        print(
            f"naive go.Heatmap(z=full {NAIVE_KEY} float32): {naive['bytes']:,} bytes, "
            f"{naive['time_s']:.2f} s"
        )

    # Where the slowest one spends its time: pooling vs figure + JSON.
    from fxcore.measures.stats import layout_2d, pool_to_budget

    worst = max(per, key=lambda k: per[k]["time_maxabs_s"])
    stat = rng.standard_normal(shapes[worst], dtype=np.float32) * 0.01
    split = {}
    for mode in ("mean", "maxabs"):
        split[f"pool_{mode}_s"] = best_time(
            lambda m=mode: pool_to_budget(layout_2d(stat), (512, 512), m), args.repeat
        )
    pooled = pool_to_budget(layout_2d(stat), (512, 512))[0]
    split["figure_json_s"] = best_time(
        lambda: heatmap_figure(pooled, block=per[worst]["block"]).to_json(), args.repeat
    )
    print(
        f"{worst}: pool_to_budget mean {split['pool_mean_s']:.3f} s, maxabs "
        f"{split['pool_maxabs_s']:.3f} s; figure + JSON {split['figure_json_s']:.3f} s"
    )

    worst_b = max(per, key=lambda k: per[k]["bytes"])
    worst_t = max(per, key=lambda k: max(per[k]["time_mean_s"], per[k]["time_maxabs_s"]))
    max_b = per[worst_b]["bytes"]
    max_t = max(per[worst_t]["time_mean_s"], per[worst_t]["time_maxabs_s"])
    c3 = per[NAIVE_KEY]
    rows = [
        {
            "bench": "payload",
            "what": f"largest figure JSON, {len(keys)} VGG-19 weights",
            "value": f"{max_b / 1e6:.2f} MB ({worst_b})",
            "target": "<= 2 MB",
            "ok": max_b <= TARGET_BYTES,
        },
        {
            "bench": "payload",
            "what": "slowest figure build (pool+figure+JSON)",
            "value": f"{max_t:.3f} s ({worst_t})",
            "target": f"<= {TARGET_S} s",
            "ok": max_t <= TARGET_S,
        },
        {
            "bench": "payload",
            "what": f"  {worst}: pool mean / maxabs / fig+JSON",
            "value": f"{split['pool_mean_s']:.3f} / {split['pool_maxabs_s']:.3f} / "
            f"{split['figure_json_s']:.3f} s",
            "target": "",
            "ok": None,
        },
    ]
    if naive:
        rows.append(
            {
                "bench": "payload",
                "what": f"{NAIVE_KEY}: naive / fxcore bytes",
                "value": f"{naive['bytes'] / 1e6:.1f} MB / {c3['bytes'] / 1e6:.2f} MB "
                f"({naive['bytes'] / c3['bytes']:.0f}x)",
                "target": "",
                "ok": None,
            }
        )
    result = {
        "builder": builder,
        "tensors": per,
        "naive": naive,
        "slowest_split": split,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

"""Benchmark the Feature maps page's work for one upload: two VGG-19s at 224 px on the CPU.

Both models are built once (random init, torchvision architecture via ``fxcore.models.nets``) and warmed
up; then each step is timed ``--repeat`` times and the best (least disturbed by other work on
the machine) is reported:

- ``prepare``: ``fxcore.upload.faces.prepare_upload`` of a 640x640 JPEG with face crop (decode, detect,
  crop, resize, normalise);
- ``explain``: ``fxcore.compare.analysis.explain`` for both models at the app's default layer
  (:func:`fxcore.explain.layers.cam_layer`: the deepest conv with maps >= 16 px, ``features.25`` at
  224 px): channel mean, top-k, Grad-CAM for and against, all from ONE forward per model whose
  graph starts at the Grad-CAM layer (``fxcore.explain.gradcam.explain_image``);
- the unfused way, for comparison: ``feature_maps`` (one no-grad forward) then ``grad_cam_both``
  (captum: a second forward with a full graph + backward down to the layer);
- references: a bare no-grad forward (the floor: any explanation needs one forward), a bare
  forward + backward with parameter gradients enabled, Captum Grad-CAM called twice (positive,
  then negative target), and the no-grad forward in channels_last memory format and under bf16
  autocast (levers, not used by fxcore: neither is faster on this CPU).

    python benchmarks/bench_explain.py [--repeat 5] [--size 224] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchlib import best_time  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` after one untimed warm-up call (the first torch call builds kernels)."""
    return best_time(fn, repeat, warmup=True)


TARGET_S = 1.0


def face_jpeg(size: int = 640) -> bytes:
    """A synthetic face photo (SynthFaces render, not from any dataset) as JPEG bytes."""
    from PIL import Image

    from fxcore.data.synthfaces import SynthFaces

    arr = SynthFaces("val", image_size=size, max_samples=4).render([3])[0].transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--model", default="vgg19")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from fxcore.compare.analysis import explain
    from fxcore.explain.activations import feature_maps
    from fxcore.explain.gradcam import grad_cam, grad_cam_both
    from fxcore.explain.layers import cam_layer
    from fxcore.models.nets import build_model
    from fxcore.upload.faces import prepare_upload

    torch.manual_seed(0)
    models = [build_model(args.model, 1).eval() for _ in range(2)]
    named = [(f"run{i}", "Smiling", m) for i, m in enumerate(models)]
    layer = cam_layer(models[0], args.size)  # the page's default layer
    data = face_jpeg()
    x = prepare_upload(data, args.size, True, crop_face=True).tensor  # (1, 3, S, S)

    def forward_backward(m: torch.nn.Module) -> None:
        """Forward with grad, backward from the logit down to ``layer``'s output only."""
        store = {}
        h = dict(m.named_modules())[layer].register_forward_hook(
            lambda _m, _i, out: store.__setitem__("a", out)
        )
        try:
            out = m(x)
            torch.autograd.grad(out[:, 0].sum(), store["a"])
        finally:
            h.remove()

    def no_grad_forward(m: torch.nn.Module) -> None:
        with torch.no_grad():
            m(x)

    r = args.repeat
    t: dict[str, float] = {}
    t["prepare_upload (face crop)"] = timed(
        lambda: prepare_upload(data, args.size, True, crop_face=True), r
    )
    t["explain, both models"] = timed(lambda: explain(named, x, layer, top_k=8), r)
    t["  feature_maps x2"] = timed(lambda: [feature_maps(m, x, layer, 8) for m in models], r)
    t["  grad_cam_both x2"] = timed(lambda: [grad_cam_both(m, x, layer) for m in models], r)
    t["ref: no-grad forward x2"] = timed(lambda: [no_grad_forward(m) for m in models], r)
    t["ref: forward+backward x2"] = timed(lambda: [forward_backward(m) for m in models], r)
    t["ref: captum pos+neg x2"] = timed(
        lambda: [grad_cam(m, x, layer, t_) for m in models for t_ in ("positive", "negative")], r
    )
    cl = [build_model(args.model, 1).eval().to(memory_format=torch.channels_last) for _ in range(2)]
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def cl_forward() -> None:
        with torch.no_grad():
            for m in cl:
                m(x_cl)

    def bf16_forward() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for m in models:
                m(x)

    t["ref: no-grad fwd x2, channels_last"] = timed(cl_forward, r)
    t["ref: no-grad fwd x2, bf16 autocast"] = timed(bf16_forward, r)

    total = t["explain, both models"]
    print(
        f"{args.model} x2 at {args.size} px, layer {layer}, torch threads "
        f"{torch.get_num_threads()}, best of {r}"
    )
    for k, v in t.items():
        print(f"  {k:<30}{v:8.3f} s")
    floor = t["ref: no-grad forward x2"]
    unfused = t["  feature_maps x2"] + t["  grad_cam_both x2"]
    print(
        f"  explain / no-grad forward floor: {total / floor:.2f}x; "
        f"unfused / fused: {unfused / total:.2f}x"
    )
    rows = [
        {
            "bench": "explain",
            "what": f"explain(): 2x {args.model} {args.size}px, act+CAM+/-",
            "value": f"{total:.2f} s",
            "target": f"<= {TARGET_S:.1f} s",
            "ok": total <= TARGET_S,
        },
        {
            "bench": "explain",
            "what": "  unfused: feature_maps x2 + grad_cam_both x2",
            "value": f"{unfused:.2f} s ({unfused / total:.2f}x fused)",
            "target": "",
            "ok": None,
        },
        {
            "bench": "explain",
            "what": "  floor: one no-grad forward x2",
            "value": f"{floor:.2f} s ({total / floor:.2f}x)",
            "target": "",
            "ok": None,
        },
        {
            "bench": "explain",
            "what": "upload prep (decode, face crop, resize)",
            "value": f"{t['prepare_upload (face crop)']:.3f} s",
            "target": "",
            "ok": None,
        },
    ]
    result = {
        "model": args.model,
        "size": args.size,
        "layer": layer,
        "repeat": r,
        "threads": torch.get_num_threads(),
        "times_s": t,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

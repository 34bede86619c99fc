"""Analysis commands of the CLI: ``stats``, ``compare``, ``explain`` and ``figures``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _experiment(args: argparse.Namespace):
    from fxcore.runs import open_experiment

    return open_experiment(args.experiment, root=args.root)


def cmd_stats(args: argparse.Namespace) -> int:
    from fxcore.analysis import epoch_span, run_mean_var

    run = _experiment(args).run(args.run)
    lo, hi = args.epochs
    eps = epoch_span([run], lo, hi)
    mean, var = run_mean_var(run, args.layer, lo, hi)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, mean=mean, var=var, epochs=np.array(eps))
    print(
        f"wrote {out}: mean/var of {args.layer} {tuple(mean.shape)} over epochs {eps[0]}..{eps[-1]}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fxcore.analysis import compare
    from fxcore.cli import _jsonable

    result = compare(_experiment(args), args.runs, n_probe=args.probe)
    if args.json:
        print(json.dumps(_jsonable(result)))
        return 0
    dyn = result["dynamics"]
    a, b = dyn["runs"]
    print(f"{result['experiment']}: {a} vs {b}, epochs {dyn['epochs'][0]}..{dyn['epochs'][-1]}")
    cka = result.get("cka", {}).get("layers", {})
    print(f"{'layer':24} {'drift ' + a[:8]:>15} {'drift ' + b[:8]:>15} {'cosine':>7} {'CKA':>6}")
    for key, d in dyn["layers"].items():
        c = cka.get(key.removesuffix(".weight"), [float("nan")])[-1]
        print(f"{key:24} {d['drift_a'][-1]:15.3f} {d['drift_b'][-1]:15.3f} {d['cosine'][-1]:7.3f} "
              f"{c:6.3f}")  # fmt: skip
    loc = result.get("localisation", {})
    for run, shares in loc.get("runs", {}).items():
        text = "  ".join(f"{r} {v[-1]:.2f}" for r, v in shares.items())
        print(f"attention share, {run} (final epoch): {text}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from fxcore.activations import overlay, shared_range
    from fxcore.analysis import explain, pick_runs
    from fxcore.faces import prepare_upload

    exp = _experiment(args)
    runs = pick_runs(exp, args.runs)
    cfg = exp.info.get("config", {})
    prepared = prepare_upload(Path(args.image), image_size=int(cfg.get("image_size", 224)),
                              normalize=cfg.get("dataset") != "mnist", crop_face=args.crop_face)  # fmt: skip
    models = [(r.name, r.attribute, r.build_model(args.epoch)) for r in runs]
    views = explain(models, prepared.tensor, args.layer, top_k=args.top_k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(prepared.display.convert("RGB"))
    prepared.display.save(out / "input.png")
    # One shared colour scale per kind of map, so the two models are directly comparable.
    ranges = {kind: shared_range([getattr(v, kind) for v in views])
              for kind in ("channel_mean", "cam_positive", "cam_negative")}  # fmt: skip
    probs = {}
    for v in views:
        for kind, (lo, hi) in ranges.items():
            Image.fromarray(overlay(rgb, getattr(v, kind), lo, hi)).save(
                out / f"{v.run}_{kind}.png"
            )
        probs[v.run] = {"attribute": v.attribute, "probability": v.probability, "logit": v.logit,
                        "top_channels": v.top_channels}  # fmt: skip
    meta = {"epoch": args.epoch, "layer": args.layer, "image": str(args.image),
            "preparation": prepared.message, "models": probs}  # fmt: skip
    (out / "predictions.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(probs))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from fxcore.figures import write_figures

    paths = write_figures(_experiment(args), Path(args.out), image=args.image, layer=args.layer,
                          n_probe=args.probe)  # fmt: skip
    for p in paths:
        print(p)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fxcore.cli import _jsonable
    from fxcore.evaluate import EvalError, evaluate_experiment, folder_set

    exp = _experiment(args)
    attrs = [r.attribute for r in exp.runs]
    labels = Path(args.labels) if args.labels else None
    if labels and not args.images:
        raise EvalError("--labels needs --images DIR: the folder of the photos it labels")
    eval_set = folder_set(Path(args.images), labels, attrs) if args.images else None
    epochs = [args.epoch] if args.epoch is not None else None
    res = evaluate_experiment(exp, eval_set, args.framing, epochs, progress=not args.json)
    if args.json:
        print(json.dumps(_jsonable(res)))
        return 0
    framed = ", ".join(f"{k} {v}" for k, v in res["framed"].items())
    print(f"{res['experiment']} on {res['set']} ({res['n_images']} images, {res['framing']}: "
          f"{framed}; {res['seconds_per_image'] * 1000:.0f} ms/image)")  # fmt: skip
    print(f"{'run':12} {'epoch':>5} {'acc':>6} {'bal_acc':>7} {'AUC':>6} {'ECE':>6}")
    for run, per_epoch in res["runs"].items():
        for epoch, m in per_epoch.items():
            print(f"{run:12} {epoch:>5} {m['accuracy']:6.3f} {m['balanced_accuracy']:7.3f} "
                  f"{m['auc']:6.3f} {m['ece']:6.3f}")  # fmt: skip
    print(f"stored in {exp.path / 'evaluations'}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from fxcore.ship import ship_experiment

    res = ship_experiment(_experiment(args).path)
    print(f"{args.experiment}: {res['files']} epoch files to float16, optimizer state removed; "
          f"{res['bytes_before'] / 1e6:.1f} MB -> {res['bytes_after'] / 1e6:.1f} MB")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the analysis sub-commands on the main parser."""
    from fxcore.cli import DEFAULT_ROOT, _epoch_range, _nonneg_int, _positive_int

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("experiment", help="experiment folder, or its name under --root")
        p.add_argument("--root", default=DEFAULT_ROOT)

    p = sub.add_parser("stats", help="per-weight mean and variance of one tensor over epochs")
    common(p)
    p.add_argument("--run", required=True, help="run name (attribute)")
    p.add_argument("--layer", required=True, help="tensor key, e.g. classifier.3.weight")
    p.add_argument("--epochs", type=_epoch_range, default=(None, None), help="A:B inclusive")
    p.add_argument("--out", required=True, help="output .npz with arrays mean, var, epochs")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("compare", help="drift, cosine, CKA and attention shares of two runs")
    common(p)
    p.add_argument("--runs", nargs=2, metavar=("R1", "R2"))
    p.add_argument("--probe", type=_positive_int, default=128, help="probe images for CKA/CAM")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="feature maps and Grad-CAM of each model for one image")
    common(p)
    p.add_argument("--image", required=True)
    p.add_argument("--epoch", type=_nonneg_int, required=True)
    p.add_argument("--layer", required=True, help="module name, e.g. features.10")
    p.add_argument("--runs", nargs="+")
    p.add_argument("--top-k", type=_positive_int, default=8)
    p.add_argument("--crop-face", action="store_true", help="detect the face and crop like CelebA")
    p.add_argument("--out", required=True, help="output folder for PNGs and predictions.json")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("figures", help="static PNGs of the seed paper's figures and the new ones")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--image", help="face for the feature-map figures (default: a probe image)")
    p.add_argument("--layer", help="VGG tensor for the mean/variance figures")
    p.add_argument("--probe", type=_positive_int, default=64)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "eval", help="accuracy, AUC, balanced accuracy and ECE on a folder of photos"
    )
    common(p)
    p.add_argument("--images", help="folder of photos (default: the experiment's test split)")
    p.add_argument("--labels", help="CelebA-format attribute file (default: in --images or above)")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument("--align", dest="framing", action="store_const", const="align",
                         help="detect the face and align it like CelebA (default)")  # fmt: skip
    framing.add_argument("--face-crop", dest="framing", action="store_const", const="face",
                         help="detect the face and crop it (no alignment)")  # fmt: skip
    framing.add_argument("--centre", dest="framing", action="store_const", const="centre",
                         help="centre crop, as the training images")  # fmt: skip
    p.set_defaults(framing="align")
    p.add_argument("--epoch", type=_nonneg_int, help="only this epoch (default: every epoch)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("ship", help="float16 weights and no optimizer state (to commit a pair)")
    common(p)
    p.set_defaults(func=cmd_ship)

"""Analysis commands of the CLI: ``stats``, ``compare``, ``explain`` and ``figures``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fxcore.core.argtypes import (
    DEFAULT_ROOT,
    JSON_HELP,
    ROOT_HELP,
    epoch_range,
    nonneg_int,
    positive_int,
)
from fxcore.core.devices import DEVICE_CHOICES, DEVICE_HELP
from fxcore.core.errors import FxcoreError


def jsonable(obj: Any) -> Any:
    """Replace NaN/inf with None so ``--json`` output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def _experiment(args: argparse.Namespace):
    from fxcore.data.inputs import DATA_ENV
    from fxcore.store.runs import open_experiment

    if getattr(args, "data_root", None):  # first place fxcore.data.inputs.locate_data looks
        os.environ[DATA_ENV] = str(Path(args.data_root).expanduser().resolve())
    return open_experiment(args.experiment, root=args.root)


def _report_skipped(
    runs: Sequence, strict: bool, lo: int | None = None, hi: int | None = None
) -> list[tuple[str, int, str]]:
    """One warning line per damaged or missing epoch in lo..hi that the analysis leaves out;
    with ``--strict``, an error instead of going on with fewer epochs than asked for."""
    from fxcore.store.checkpoints import CheckpointError
    from fxcore.store.runs import skipped_epochs

    skipped = skipped_epochs(runs, lo, hi)
    for name, epoch, why in skipped:
        print(f"warning: skipping epoch {epoch} of run {name}: {why}", file=sys.stderr)
    if skipped and strict:
        raise CheckpointError(
            f"{len(skipped)} asked-for epoch(s) are damaged or missing (listed "
            "above); without --strict the other epochs are used"
        )
    return skipped


def cmd_stats(args: argparse.Namespace) -> int:
    from fxcore.compare.analysis import run_mean_var
    from fxcore.store.runs import epochs_text
    from fxcore.store.select import epoch_span

    run = _experiment(args).run(args.run)
    lo, hi = args.epochs
    _report_skipped([run], args.strict, lo, hi)
    eps = epoch_span([run], lo, hi)
    mean, var = run_mean_var(run, args.layer, lo, hi)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, mean=mean, var=var, epochs=np.array(eps))
    print(
        f"wrote {out}: mean/var of {args.layer} {tuple(mean.shape)} over epochs {epochs_text(eps)}"
    )
    return 0


def _device(args: argparse.Namespace) -> str:
    """``--device`` (else ``$FXCORE_DEVICE``, else auto) resolved to cpu or cuda, checked first."""
    from fxcore.core.devices import resolve_device

    return resolve_device(args.device)


def cmd_compare(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from fxcore.compare.control import compare
    from fxcore.compare.plan import duration_text, estimate_seconds, plan_compare
    from fxcore.store.select import epoch_span

    device = _device(args)
    exp = _experiment(args)
    plan = plan_compare(exp, args.runs, args.probe, None, args.layers)
    skipped = _report_skipped(plan.everyone, args.strict, *args.epochs)
    epochs = None
    if args.epochs != (None, None):
        epochs = epoch_span(plan.everyone, *args.epochs)
        plan = plan_compare(exp, args.runs, args.probe, epochs, args.layers)
    # Announced on stderr before the work starts; stdout carries only the result.
    print(f"{plan.describe()} on {device}", file=sys.stderr)
    try:  # a guide only: a model that cannot be timed on zeros must not stop the comparison
        seconds = estimate_seconds(exp, plan, device, args.bootstrap) if plan.images else None
    except (RuntimeError, ValueError, IndexError, FxcoreError):
        seconds = None  # compare itself names any real problem next
    if seconds is not None:
        print(
            f"estimate: about {duration_text(seconds)} if nothing is cached yet (from a timed "
            "forward and backward pass; limit it with --epochs, --probe or --layers)",
            file=sys.stderr,
        )
    with tqdm(total=plan.total, desc="compare", unit="step", file=sys.stderr) as bar:

        def progress(done: int, _total: int, label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update(done - bar.n)

        result = compare(
            exp,
            args.runs,
            n_probe=args.probe,
            n_resamples=args.bootstrap,
            seed=args.seed,
            epochs=epochs,
            layers=args.layers,
            device=device,
            progress=progress,
        )
    result["skipped_epochs"] = [{"run": r, "epoch": e, "reason": why} for r, e, why in skipped]
    if args.json:
        print(json.dumps(jsonable(result)))
        return 0
    from fxcore.cli.format import compare_text

    if prov := result.get("cka", {}).get("provenance"):
        from fxcore.store.results import provenance_label

        print(f"shipped with the experiment: {provenance_label(prov)}")
    print(compare_text(result))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from fxcore.compare.analysis import explain
    from fxcore.data.inputs import input_spec
    from fxcore.explain.activations import overlay, shared_range
    from fxcore.store.checkpoints import CheckpointError
    from fxcore.store.runs import epochs_text
    from fxcore.store.select import pick_runs
    from fxcore.upload.faces import prepare_upload

    device = _device(args)
    exp = _experiment(args)
    runs = pick_runs(exp, args.runs)
    for run in runs:  # one epoch only: a damaged one cannot be skipped, it is an error
        if args.epoch in run.bad_epochs():
            raise CheckpointError(
                f"epoch {args.epoch} of run {run.name} cannot be used: "
                f"{run.bad_epochs()[args.epoch]}; valid epochs: "
                f"{epochs_text(run.epochs())}"
            )
    spec = input_spec(exp.info)
    prepared = prepare_upload(
        Path(args.image),
        image_size=spec.image_size,
        normalize=spec.normalize,
        crop_face=args.crop_face,
        mode=spec.mode,
    )
    models = [(r.name, r.attribute, r.build_model(args.epoch, device)) for r in runs]
    views = explain(models, prepared.tensor, args.layer, top_k=args.top_k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(prepared.display.convert("RGB"))
    prepared.display.save(out / "input.png")
    # One shared colour scale per kind of map, so the two models are directly comparable.
    ranges = {
        kind: shared_range([getattr(v, kind) for v in views])
        for kind in ("channel_mean", "cam_positive", "cam_negative")
    }
    probs = {}
    for v in views:
        for kind, (lo, hi) in ranges.items():
            Image.fromarray(overlay(rgb, getattr(v, kind), lo, hi)).save(
                out / f"{v.run}_{kind}.png"
            )
        probs[v.run] = {
            "attribute": v.attribute,
            "probability": v.probability,
            "logit": v.logit,
            "top_channels": v.top_channels,
        }
    meta = {
        "epoch": args.epoch,
        "layer": args.layer,
        "image": str(args.image),
        "preparation": prepared.message,
        "models": probs,
    }
    (out / "predictions.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(probs))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from fxcore.compare.figures import write_figures

    device = _device(args)
    exp = _experiment(args)
    _report_skipped(exp.runs, args.strict)
    paths = write_figures(
        exp, Path(args.out), image=args.image, layer=args.layer, n_probe=args.probe, device=device
    )
    for p in paths:
        print(p)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fxcore.compare.evaluate import EvalError, evaluate_experiment, folder_set

    device = _device(args)
    exp = _experiment(args)
    attrs = [r.attribute for r in exp.runs]
    labels = Path(args.labels) if args.labels else None
    if labels and not args.images:
        raise EvalError("--labels needs --images DIR: the folder of the photos it labels")
    eval_set = folder_set(Path(args.images), labels, attrs) if args.images else None
    epochs = [args.epoch] if args.epoch is not None else None
    res = evaluate_experiment(
        exp, eval_set, args.framing, epochs, progress=not args.json, device=device
    )
    if res.get("labels_without_image"):  # on stderr: --json keeps stdout for the result
        print(
            f"note: {res['labels_without_image']} labelled row(s) of {labels or 'the labels'} "
            f"had no image in {args.images}; evaluated the {res['n_images']} image(s) present",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(jsonable(res)))
        return 0
    framed = ", ".join(f"{k} {v}" for k, v in res["framed"].items())
    print(
        f"{res['experiment']} on {res['set']} ({res['n_images']} images, {res['framing']}: "
        f"{framed}; {res['seconds_per_image'] * 1000:.0f} ms/image)"
    )
    print(f"{'run':12} {'epoch':>5} {'acc':>6} {'bal_acc':>7} {'AUC':>6} {'ECE':>6}")
    for run, per_epoch in res["runs"].items():
        for epoch, m in per_epoch.items():
            print(
                f"{run:12} {epoch:>5} {m['accuracy']:6.3f} {m['balanced_accuracy']:7.3f} "
                f"{m['auc']:6.3f} {m['ece']:6.3f}"
            )
    print(f"stored in {exp.path / 'evaluations'}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from fxcore.compare.ship import ship_experiment

    res = ship_experiment(_experiment(args).path)
    print(
        f"{args.experiment}: {res['files']} epoch files to float16, optimizer state removed; "
        f"{res['bytes_before'] / 1e6:.1f} MB -> {res['bytes_after'] / 1e6:.1f} MB"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the analysis sub-commands on the main parser."""

    def common(p: argparse.ArgumentParser, strict: bool = True, device: bool = True) -> None:
        p.add_argument("experiment", help="experiment folder, or its name under --root")
        p.add_argument("--root", default=DEFAULT_ROOT, help=ROOT_HELP)
        if device:
            p.add_argument("--device", choices=DEVICE_CHOICES, help=DEVICE_HELP)
        p.add_argument(
            "--data-root",
            help="the experiment's dataset on this machine (default: $FXCORE_DATA, then by "
            "name beside the repository, then the recorded path; its fingerprint is checked)",
        )
        if strict:
            p.add_argument(
                "--strict",
                action="store_true",
                help="fail instead of skipping damaged or missing epochs (each skipped "
                "one is named in a warning line either way)",
            )

    p = sub.add_parser("stats", help="per-weight mean and variance of one tensor over epochs")
    common(p, device=False)  # weights only: no model runs
    p.add_argument("--run", required=True, help="run name (attribute)")
    p.add_argument("--layer", required=True, help="tensor key, e.g. classifier.3.weight")
    p.add_argument(
        "--epochs", type=epoch_range, default=(None, None), metavar="A:B", help="A:B inclusive"
    )
    p.add_argument("--out", required=True, help="output .npz with arrays mean, var, epochs")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "compare",
        help="drift, cosine, CKA and attention shares of two runs",
        description="Drift, cosine, CKA, accuracy, probes and attention shares of two runs, "
        "and of the first against its control run when the experiment has one. The plan, a time "
        "estimate and a progress bar go to stderr; the result to stdout. CKA is the unbiased "
        "estimator: near 0 for unrelated layers, it can be slightly below 0.",
    )
    common(p)
    p.add_argument(
        "--runs",
        nargs=2,
        metavar=("R1", "R2"),
        help="the two runs to compare (default: the first two that are not controls)",
    )
    p.add_argument("--probe", type=positive_int, default=128, help="probe images (default 128)")
    p.add_argument(
        "--bootstrap",
        type=positive_int,
        default=200,
        help="bootstrap resamples for the confidence intervals",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the bootstrap and probes")
    p.add_argument(
        "--epochs",
        type=epoch_range,
        default=(None, None),
        metavar="A:B",
        help="only epochs A:B inclusive (default: every epoch; weight dynamics always cover all)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="only these layers, e.g. features.10 classifier.0 (default: every conv and linear)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="feature maps and Grad-CAM of each model for one image")
    common(p, strict=False)
    p.add_argument("--image", required=True, help="photo to explain (JPEG, PNG, ...)")
    p.add_argument("--epoch", type=nonneg_int, required=True, help="epoch of the weights to use")
    p.add_argument("--layer", required=True, help="module name, e.g. features.10")
    p.add_argument("--runs", nargs="+", help="runs to explain with (default: the first two)")
    p.add_argument(
        "--top-k", type=positive_int, default=8, help="most active channels to keep (default 8)"
    )
    p.add_argument("--crop-face", action="store_true", help="detect the face and crop like CelebA")
    p.add_argument("--out", required=True, help="output folder for PNGs and predictions.json")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("figures", help="static PNGs of the seed paper's figures and the new ones")
    common(p)
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--image", help="face for the feature-map figures (default: a probe image)")
    p.add_argument("--layer", help="VGG tensor for the mean/variance figures")
    p.add_argument(
        "--probe", type=positive_int, default=64, help="probe images for CKA/CAM (default 64)"
    )
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser(
        "eval", help="accuracy, AUC, balanced accuracy and ECE on a folder of photos"
    )
    common(p)
    p.add_argument("--images", help="folder of photos (default: the experiment's test split)")
    p.add_argument("--labels", help="CelebA-format attribute file (default: in --images or above)")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument(
        "--align",
        dest="framing",
        action="store_const",
        const="align",
        help="detect the face and align it like CelebA (default)",
    )
    framing.add_argument(
        "--face-crop",
        dest="framing",
        action="store_const",
        const="face",
        help="detect the face and crop it (no alignment)",
    )
    framing.add_argument(
        "--centre",
        dest="framing",
        action="store_const",
        const="centre",
        help="centre crop, as the training images",
    )
    p.set_defaults(framing="align")
    p.add_argument("--epoch", type=nonneg_int, help="only this epoch (default: every epoch)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("ship", help="float16 weights and no optimizer state (to commit a pair)")
    common(p, device=False)
    p.set_defaults(func=cmd_ship)

"""Command line: ``python -m fxcore <command> --help``.

Argument errors exit with code 2 and one line (argparse); problems with data, checkpoints or models
exit with code 1 and one ``error:`` line that says what to do — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from fxcore.data import DATASETS
from fxcore.models import MODEL_NAMES

DEFAULT_ROOT = "checkpoints"


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (errors name the value, one line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 0.5)")
    return value


def _epoch_range(text: str) -> tuple[int | None, int | None]:
    """``A:B`` inclusive, either side optional (``:5``, ``3:``)."""
    a, sep, b = text.partition(":")
    try:
        lo = int(a) if a else None
        hi = int(b) if b else (lo if not sep else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an epoch range like 0:10") from None
    if (lo is not None and lo < 0) or (hi is not None and lo is not None and hi < lo):
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= A <= B")
    return lo, hi


# ---------------------------------------------------------------- commands


def cmd_data(args: argparse.Namespace) -> int:
    from fxcore.data import dataset_summary

    summary = dataset_summary(args.dataset, root=args.data_root, attributes=args.attributes)
    if args.json:
        print(json.dumps({"splits": summary["splits"], "positive_rate": summary["positive_rate"]}))
        return 0
    print(f"{args.dataset}: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()))
    for attr, rate in summary["positive_rate"].items():
        if isinstance(rate, dict):
            print(f"  {attr}: " + " ".join(f"{c}:{r:.3f}" for c, r in rate.items()))
        else:
            print(f"  {attr}: {rate:.1%} positive")
    return 0


def cmd_synthfaces_grid(args: argparse.Namespace) -> int:
    from fxcore.synthfaces import synthfaces_grid

    path = synthfaces_grid(args.out, rows=args.rows, cols=args.cols, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _train_config(args: argparse.Namespace):
    from fxcore.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if values.get("data_root"):  # saved in the experiment: make it valid from any folder
        values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    from fxcore.train import train

    cfg = _train_config(args)
    out = train(cfg, args.out, resume=args.resume, force=args.force)
    print(f"done: {out}  (explore with: python -m fxcore runs --root {out.parent})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fxcore.demo import make_demo, missing_demos

    if args.if_missing:  # the shipped CelebA pair does not count: its demos still get trained
        names = missing_demos(Path(args.out))
        if names:
            make_demo(Path(args.out), names)
        return 0
    make_demo(Path(args.out))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from fxcore.runs import list_experiments, runs_table

    rows = runs_table(list_experiments(args.root))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no experiments under {args.root} (create them with: python -m fxcore demo)")
        return 0
    print(f"{'experiment':24} {'run':12} {'model':9} {'dataset':10} {'epochs':7} val_acc  bad")
    for r in rows:
        last = r["metrics"][-1] if r["metrics"] else {}
        acc = last.get("val_accuracy")
        span = f"0..{max(r['epochs'])}" if r["epochs"] else "-"
        acc_s = f"{acc:.3f}" if isinstance(acc, float) else "  -  "
        print(f"{r['experiment']:24} {r['run']:12} {r['model']:9} {r['dataset']:10} {span:7} "
              f"{acc_s}    {len(r['bad_epochs']) or ''}")  # fmt: skip
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from fxcore.importer import import_run

    run_dir = import_run(Path(args.src), args.model, Path(args.out), attribute=args.attribute)
    print(f"imported into {run_dir}")
    return 0


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Argument errors as ONE line (plus exit code 2), pointing at --help instead of usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="celeba", help="image source")
    p.add_argument("--data-root", help="dataset folder (CelebA official layout, MNIST IDX files)")
    p.add_argument("--attributes", nargs="+", metavar="A", help="one run per attribute")
    p.add_argument("--model", choices=MODEL_NAMES, default="vgg19")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=16, help="global batch size")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--loss", choices=("auto", "bce", "mse", "ce"), default="auto")
    p.add_argument("--image-size", type=_positive_int, default=224, help="square input side")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--pretrained", choices=("auto", "yes", "no"), default="auto",
                   help="ImageNet weights for VGG (auto: when they can be had)")  # fmt: skip
    p.add_argument("--weights", help="local .safetensors ImageNet state dict (offline pretrained)")
    p.add_argument("--max-train", type=_positive_int, help="use the first N training images")
    p.add_argument("--max-val", type=_positive_int, help="use the first N validation images")
    p.add_argument("--val-fraction", type=_fraction, default=0.1)
    p.add_argument("--synth-train", type=_positive_int, help="SynthFaces training-set size")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (CUDA)")
    p.add_argument("--workers", type=_nonneg_int, default=2, help="DataLoader workers (streaming)")
    p.add_argument("--cache-gb", type=_positive_float, default=4.0,
                   help="decode the split into memory once when it fits this budget")  # fmt: skip
    p.add_argument("--augment", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="batch augmentation shared by the lockstep (auto: on for face datasets)")  # fmt: skip
    p.add_argument("--out", required=True, help="experiment folder (one run folder per attribute)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete epoch")
    p.add_argument("--force", action="store_true", help="overwrite an existing experiment")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (a summary line per epoch is still printed)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fxcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("data", help="sample counts and positive rates of a dataset")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--data-root")
    p.add_argument("--attributes", nargs="+", metavar="A")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("synthfaces-grid", help="write a labelled 4x4 grid of SynthFaces as PNG")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=_positive_int, default=4)
    p.add_argument("--cols", type=_positive_int, default=4)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.set_defaults(func=cmd_synthfaces_grid)

    p = sub.add_parser("train", help="train one model per attribute in lockstep")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="create the built-in demo experiments (offline)")
    p.add_argument("--out", default=DEFAULT_ROOT, help="root folder for the experiments")
    p.add_argument(
        "--if-missing",
        action="store_true",
        help="train only the demos that are missing (nothing if the folder holds other experiments)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("runs", help="list experiments, runs, epochs and metrics")
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("import", help="turn a folder of per-epoch weight files into a run")
    p.add_argument("src", help="folder of .pt/.pth/.safetensors files, epoch number in each name")
    p.add_argument("--model", choices=MODEL_NAMES, required=True)
    p.add_argument("--out", required=True, help="run folder; its parent is the experiment")
    p.add_argument("--attribute", help="attribute the run was trained on (default: run name)")
    p.set_defaults(func=cmd_import)

    from fxcore import analysis_cli

    analysis_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from fxcore.train import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except OSError as exc:  # unwritable --out, missing input file, full disk ...
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Every error type fxcore defines (DataError, CheckpointError, ImageInputError, ...) carries
        # a message written for the user: print it as one line. Anything else is a bug: traceback.
        if not type(exc).__module__.startswith("fxcore."):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _jsonable(obj: Any) -> Any:
    """Replace NaN/inf with None so ``--json`` output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj

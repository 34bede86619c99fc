"""Command line of fxcore: python -m fxcore COMMAND --help shows each command's options.

Argument errors exit with code 2 and one line (argparse); problems with data, checkpoints or models
exit with code 1 and one ``error:`` line that says what to do — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fxcore.core.argtypes import DEFAULT_ROOT, JSON_HELP, ROOT_HELP, nonneg_int, positive_int
from fxcore.core.errors import FxcoreError, TrainingInterrupted
from fxcore.data.registry import DATASETS, MODEL_NAMES
from fxcore.train.config import add_train_args

DESCRIPTION = (
    "fxcore trains identical networks in lockstep on different labels and compares how they "
    "come to differ. Run python -m fxcore COMMAND --help for the options of a command."
)

# ---------------------------------------------------------------- commands


def cmd_data(args: argparse.Namespace) -> int:
    from fxcore.data.registry import dataset_summary

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
    from fxcore.data.synthfaces import synthfaces_grid

    path = synthfaces_grid(args.out, rows=args.rows, cols=args.cols, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from fxcore.train.config import config_from_args
    from fxcore.train.loop import train

    cfg = config_from_args(args)
    out = train(cfg, args.out, resume=args.resume, force=args.force)
    print(f"done: {out}  (explore with: python -m fxcore runs --root {out.parent})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fxcore.cli.demo import make_demo, missing_demos

    if args.if_missing:  # the shipped CelebA pair does not count: its demos still get trained
        names = missing_demos(Path(args.out))
        if names:
            make_demo(Path(args.out), names)
        return 0
    make_demo(Path(args.out))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from fxcore.store.runs import list_experiments, runs_table

    rows = runs_table(list_experiments(args.root))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no experiments under {args.root} (create them with: python -m fxcore demo)")
        return 0
    from fxcore.cli.format import number, table

    body = []
    for r in rows:
        last = r["metrics"][-1] if r["metrics"] else {}
        acc = last.get("val_accuracy")
        body.append(
            [
                r["experiment"],
                r["run"],
                r["model"],
                r["dataset"],
                f"0..{max(r['epochs'])}" if r["epochs"] else "-",
                number(acc if isinstance(acc, float) else None),
                f"{r['state']} {r['epoch_of']}" if r["state"] else "-",
                str(len(r["bad_epochs"]) or ""),
            ]
        )
    header = ["experiment", "run", "model", "dataset", "epochs", "val_acc", "state", "bad"]
    print(table(header, body, right=(5, 7)))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from fxcore.store.importer import import_run

    run_dir = import_run(Path(args.src), args.model, Path(args.out), attribute=args.attribute)
    print(f"imported into {run_dir}")
    return 0


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Argument errors as ONE line (plus exit code 2), pointing at --help instead of usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    add_train_args(p)  # one option per TrainConfig field: defaults and help stated there once
    p.add_argument("--out", required=True, help="experiment folder (one run folder per attribute)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete epoch")
    p.add_argument("--force", action="store_true", help="overwrite an existing experiment")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fxcore", description=DESCRIPTION)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("data", help="sample counts and positive rates of a dataset")
    p.add_argument("dataset", choices=DATASETS, help="which dataset to count")
    p.add_argument("--data-root", help="folder of the dataset (default: its usual location)")
    p.add_argument(
        "--attributes", nargs="+", metavar="A", help="attributes whose positive rate to print"
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("synthfaces-grid", help="write a labelled 4x4 grid of SynthFaces as PNG")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--rows", type=positive_int, default=4, help="faces per column (default 4)")
    p.add_argument("--cols", type=positive_int, default=4, help="faces per row (default 4)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="which faces to draw (default 0)")
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
    p.add_argument("--root", default=DEFAULT_ROOT, help=ROOT_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("import", help="turn a folder of per-epoch weight files into a run")
    p.add_argument("src", help="folder of .pt/.pth/.safetensors files, epoch number in each name")
    p.add_argument(
        "--model", choices=MODEL_NAMES, required=True, help="architecture the weights belong to"
    )
    p.add_argument("--out", required=True, help="run folder; its parent is the experiment")
    p.add_argument("--attribute", help="attribute the run was trained on (default: run name)")
    p.set_defaults(func=cmd_import)

    from fxcore.cli import commands as analysis_cli
    from fxcore.cli import results as results_cli

    analysis_cli.add_commands(sub)
    results_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130
    except FxcoreError as exc:  # written for the user: one line. Anything else is a bug: traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # unwritable --out, missing input file, full disk ...
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

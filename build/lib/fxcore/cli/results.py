"""``python -m fxcore results store|verify|show EXPERIMENT``: an experiment's shipped results."""

from __future__ import annotations

import argparse
import json

from fxcore.core.argtypes import DEFAULT_ROOT, nonneg_int, positive_int

TOLERANCE = 1e-6  # |shipped - recomputed| below which a number counts as the same


def _experiment(args: argparse.Namespace):
    from fxcore.cli.commands import _experiment as open_it

    return open_it(args)


def cmd_store(args: argparse.Namespace) -> int:
    from fxcore.compare.ship import store_results

    exp = _experiment(args)
    path = store_results(exp, n_probe=args.probe, n_resamples=args.bootstrap, seed=args.seed)
    man = json.loads(path.read_text())
    from fxcore.store.results import provenance_label

    print(f"{exp.name}: {len(man['entries'])} results stored in {path.parent}")
    print(f"  {provenance_label(man['provenance'])}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from fxcore.compare.ship import verify_results

    rows = verify_results(_experiment(args))
    bad = [r for r in rows if r.max_diff > args.tolerance]
    for r in rows:
        verdict = "agrees" if r.max_diff <= args.tolerance else f"DIFFERS at {r.where}"
        print(f"{r.name:40} max |diff| {r.max_diff:.3g}  {verdict}")
    print(
        f"{len(rows) - len(bad)} of {len(rows)} shipped results agree with the recomputed ones "
        f"(tolerance {args.tolerance:g})"
    )
    return 1 if bad else 0


def cmd_show(args: argparse.Namespace) -> int:
    from fxcore.store.results import manifest, provenance_label

    exp = _experiment(args)
    man = manifest(exp.path)
    if man is None:
        print(f"{exp.name}: ships no results (store them with: python -m fxcore results store)")
        return 0
    print(f"{exp.name}: {len(man['entries'])} results, {provenance_label(man['provenance'])}")
    for name, e in man["entries"].items():
        print(f"  {name:40} {e['kind']:13} schema {e['schema']}  runs {', '.join(e['runs'])}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="store, verify or show an experiment's shipped results")
    act = p.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("store", cmd_store, "compute compare (with the control) and store it in EXP/results/"),
        ("verify", cmd_verify, "recompute the stored results and say whether they agree"),
        ("show", cmd_show, "list the stored results and what they were computed on"),
    ):
        q = act.add_parser(name, help=text)
        q.add_argument("experiment", help="experiment folder, or its name under --root")
        q.add_argument("--root", default=DEFAULT_ROOT)
        q.add_argument("--data-root", help="the experiment's dataset on this machine")
        if name == "store":
            q.add_argument("--probe", type=positive_int, default=128, help="probe images")
            q.add_argument("--bootstrap", type=positive_int, default=200, help="resamples")
            q.add_argument("--seed", type=nonneg_int, default=0)
        if name == "verify":
            q.add_argument("--tolerance", type=float, default=TOLERANCE)
        q.set_defaults(func=func)

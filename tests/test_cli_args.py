"""Command-line errors: bad arguments exit 2 with ONE stderr line; runtime problems exit 1 with
one ``error:`` line; never a traceback."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fxcore.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

# (argv, text the one line must contain)
BAD_ARGS = [
    ("train --out x --epochs -1", "--epochs: '-1' must be >= 1"),
    ("train --out x --epochs 0", "--epochs: '0' must be >= 1"),
    ("train --out x --epochs 1.5", "'1.5' is not an integer"),
    ("train --out x --epochs ten", "'ten' is not an integer"),
    ("train --out x --batch-size 0", "--batch-size: '0' must be >= 1"),
    ("train --out x --batch-size -16", "--batch-size"),
    ("train --out x --lr abc", "--lr: 'abc' is not a number"),
    ("train --out x --lr=-0.001", "must be a positive number"),
    ("train --out x --lr 0", "must be a positive number"),
    ("train --out x --lr nan", "must be a positive number"),
    ("train --out x --lr inf", "must be a positive number"),
    ("train --out x --model resnet50", "--model: invalid choice: 'resnet50'"),
    ("train --out x --dataset imagenet", "--dataset: invalid choice: 'imagenet'"),
    ("train --out x --loss hinge", "--loss: invalid choice"),
    ("train --out x --device tpu", "--device: invalid choice"),
    ("train --out x --amp fp8", "--amp: invalid choice"),
    ("train --out x --image-size 0", "--image-size: '0' must be >= 1"),
    ("train --out x --seed -1", "--seed: '-1' must be >= 0"),
    ("train --out x --workers -2", "--workers"),
    ("train --out x --val-fraction 0.7", "'0.7' must be in (0, 0.5)"),
    ("train --out x --cache-gb 0", "--cache-gb"),
    ("train --out x --max-train 0", "--max-train: '0' must be >= 1"),
    ("train --out x --attributes", "--attributes: expected at least one argument"),
    ("train --out x --frobnicate", "unrecognized arguments: --frobnicate"),
    ("train", "the following arguments are required: --out"),
    ("stats e --run a --layer l --out o --epochs 5:2", "'5:2': need 0 <= A <= B"),
    ("stats e --run a --layer l --out o --epochs -1:3", "--epochs"),
    ("stats e --run a --layer l --out o --epochs a:b", "'a:b' is not an epoch range"),
    ("stats e", "required: --run, --layer, --out"),
    ("stats --run a --layer l --out o", "required: experiment"),
    ("compare e --runs onlyone", "--runs: expected 2 arguments"),
    ("compare e --probe 0", "--probe: '0' must be >= 1"),
    ("explain e --image i --layer l --out o", "required: --epoch"),
    ("explain e --image i --layer l --out o --epoch -3", "--epoch: '-3' must be >= 0"),
    ("explain e --image i --layer l --out o --epoch 1 --top-k 0", "--top-k: '0' must be >= 1"),
    ("figures e", "required: --out"),
    ("import src --out o", "required: --model"),
    ("import src --out o --model alexnet", "--model: invalid choice"),
    ("synthfaces-grid --out g.png --rows 0", "--rows: '0' must be >= 1"),
    ("data celeb", "invalid choice: 'celeb'"),
    ("runs --root", "--root: expected one argument"),
    ("", "required: COMMAND"),
    ("fly", "invalid choice: 'fly'"),
]


@pytest.mark.parametrize("argv,text", BAD_ARGS, ids=[a or "<none>" for a, _ in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(
    argv: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv.split())
    assert info.value.code == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 1, err
    assert lines[0].startswith("python -m fxcore") and "error:" in lines[0], lines[0]
    assert text in lines[0] and lines[0].endswith("(see --help)"), lines[0]


def _runtime_cases(tiny: Path, tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, text) of commands whose arguments parse but that cannot run."""
    face = tmp / "face.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 150, 120)).save(face)
    (tmp / "not-an-image.jpg").write_bytes(b"hello")
    (tmp / "empty").mkdir()
    explain = [
        "explain",
        "tiny-synth",
        "--root",
        str(tiny),
        "--image",
        str(face),
        "--epoch",
        "1",
        "--layer",
        "features.0",
        "--out",
        str(tmp / "ex"),
    ]
    stats = [
        "stats",
        "tiny-mnist",
        "--root",
        str(tiny),
        "--run",
        "digit",
        "--layer",
        "fc1.weight",
        "--out",
        str(tmp / "s.npz"),
    ]
    return [
        (
            [
                "stats",
                "nope",
                "--root",
                str(tmp / "missing"),
                "--run",
                "a",
                "--layer",
                "b",
                "--out",
                "o",
            ],
            "does not exist",
        ),
        (["compare", "nope", "--root", str(tiny)], "not an experiment folder"),
        (["compare", "../tiny-synth", "--root", str(tiny)], "invalid name"),
        (["figures", "nope", "--root", str(tiny), "--out", str(tmp / "f")], "no experiment.json"),
        ([*stats[:5], "nope", *stats[6:]], "has no run 'nope'"),
        ([*stats[:7], "nope.weight", *stats[8:]], "no weight tensor 'nope.weight'"),
        ([*stats, "--epochs", "10:20"], "no valid epoch in 10..20"),
        ([*explain[:7], "99", *explain[8:]], "epoch 99 is missing"),
        ([*explain[:9], "nope", *explain[10:]], "unknown layer 'nope'"),
        ([*explain[:5], str(tmp / "absent.jpg"), *explain[6:]], "cannot read"),
        ([*explain[:5], str(tmp / "not-an-image.jpg"), *explain[6:]], "not an image"),
        (
            [
                "train",
                "--dataset",
                "mnist",
                "--data-root",
                str(tmp / "missing"),
                "--model",
                "fcnn3",
                "--attributes",
                "even",
                "--out",
                str(tmp / "t1"),
            ],
            "no MNIST train IDX files",
        ),
        (
            [
                "train",
                "--dataset",
                "celeba",
                "--data-root",
                str(tmp / "empty"),
                "--model",
                "vgg-mini",
                "--pretrained",
                "no",
                "--out",
                str(tmp / "t2"),
            ],
            "list_attr_celeba.txt",
        ),
        (
            [
                "train",
                "--dataset",
                "synthfaces",
                "--model",
                "vgg-mini",
                "--attributes",
                "Smiling",
                "--device",
                "cuda",
                "--out",
                str(tmp / "t3"),
            ],
            "--device cuda",
        ),
        (
            [
                "train",
                "--dataset",
                "synthfaces",
                "--model",
                "vgg-mini",
                "--attributes",
                "Nope",
                "--pretrained",
                "no",
                "--out",
                str(tmp / "t4"),
            ],
            "Nope",
        ),
        (
            ["import", str(tmp / "missing"), "--model", "fcnn3", "--out", str(tmp / "imp" / "r")],
            "not a folder",
        ),
        (["data", "mnist", "--data-root", str(tmp / "missing")], "no MNIST train IDX files"),
    ]


def test_runtime_errors_exit_1_with_one_error_line(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = []
    for argv, text in _runtime_cases(tiny_root, tmp_path):
        if "--device" in argv and __import__("torch").cuda.is_available():
            continue  # the machine has the device: nothing to refuse
        code = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        ok = code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0]
        if not ok:
            failures.append(f"{' '.join(argv)}\n  -> exit {code}: {err!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "t3").exists()  # the device is checked before anything is created
    # The output folder is checked (created) before the data: it stays empty.
    assert list((tmp_path / "t1").rglob("*")) == []


@pytest.mark.parametrize("command", ["stats", "explain", "synthfaces-grid"])
def test_unwritable_output_of_analysis_commands(
    command: str,
    tiny_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unwritable_dir: Path,
) -> None:
    face = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(face)
    argv = {
        "stats": [
            "stats",
            "tiny-mnist",
            "--root",
            str(tiny_root),
            "--run",
            "digit",
            "--layer",
            "fc1.weight",
            "--out",
            str(unwritable_dir / "s.npz"),
        ],
        "explain": [
            "explain",
            "tiny-synth",
            "--root",
            str(tiny_root),
            "--image",
            str(face),
            "--epoch",
            "1",
            "--layer",
            "features.0",
            "--out",
            str(unwritable_dir),
        ],
        "synthfaces-grid": ["synthfaces-grid", "--out", str(unwritable_dir / "grid.png")],
    }[command]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(unwritable_dir) in lines[0]


def test_real_process_bad_argument_and_runtime_error(tmp_path: Path) -> None:
    """The same contract through ``python -m fxcore`` (exit status and stderr of a real process)."""
    bad = subprocess.run(
        [sys.executable, "-m", "fxcore", "train", "--out", "x", "--epochs", "-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "python -m fxcore train: error: argument --epochs: '-1' must be >= 1 (see --help)"
    ]
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "fxcore",
            "stats",
            "nope",
            "--root",
            str(tmp_path / "none"),
            "--run",
            "a",
            "--layer",
            "b",
            "--out",
            "o",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=120,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.splitlines() == [
        f"error: no experiment 'nope': {tmp_path / 'none'} does not exist"
    ]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from fxcore.cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **sub.choices}


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _subparsers().items()
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not (action.help or "").strip() or action.help == argparse.SUPPRESS)
    ]
    assert not missing, missing


REST_MARKUP = re.compile(r"``|:(func|class|mod|meth|data|attr):|\*\*|^\.\. ", re.M)


def test_help_shows_no_rest_markup() -> None:
    found = {}
    for name, parser in _subparsers().items():
        text = parser.format_help()
        if REST_MARKUP.search(text) or "`" in text:
            found[name or "main"] = [ln for ln in text.splitlines() if "`" in ln or "**" in ln]
    assert not found, found
    top = subprocess.run(
        [sys.executable, "-m", "fxcore", "--help"], capture_output=True, text=True, env=ENV
    )
    assert top.returncode == 0 and "`" not in top.stdout and "COMMAND --help" in top.stdout

"""The package's shape: one error base, no import circles, commands import only what they use."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import fxcore
from fxcore.errors import FxcoreError


def _fxcore_modules() -> list[str]:
    return sorted(f"fxcore.{m.name}" for m in pkgutil.iter_modules(fxcore.__path__))


def test_every_fxcore_exception_derives_from_the_one_base() -> None:
    found = []
    for name in _fxcore_modules():
        if name in ("fxcore.__main__", "fxcore.figures"):
            continue  # __main__ runs the CLI; figures selects a matplotlib backend
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and obj.__module__.startswith("fxcore"):
                found.append(obj)
                assert issubclass(obj, FxcoreError), f"{obj.__module__}.{obj.__name__}"
    assert len(set(found)) >= 10


def test_cli_prints_any_fxcore_error_as_one_line(monkeypatch, capsys) -> None:
    from fxcore import cli

    class Odd(FxcoreError):
        pass

    def boom(_args):
        raise Odd("what is wrong; what to do")

    monkeypatch.setattr(cli, "cmd_runs", boom)
    assert cli.main(["runs"]) == 1
    assert capsys.readouterr().err == "error: what is wrong; what to do\n"


def test_cli_lets_bugs_raise(monkeypatch) -> None:
    from fxcore import cli

    def bug(_args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_runs", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["runs"])


def test_train_parser_is_built_from_the_config_defaults() -> None:
    from dataclasses import asdict

    from fxcore.cli import build_parser
    from fxcore.config import TrainConfig, config_from_args

    args = build_parser().parse_args(["train", "--out", "x"])
    assert config_from_args(args) == TrainConfig()
    args = build_parser().parse_args(["train", "--out", "x", "--val-fraction", "0.2",
                                      "--no-progress", "--channels-last"])  # fmt: skip
    cfg = asdict(config_from_args(args))
    assert cfg == {**asdict(TrainConfig()), "val_fraction": 0.2, "progress": False,
                   "channels_last": True}  # fmt: skip

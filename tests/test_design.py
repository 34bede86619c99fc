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
    args = build_parser().parse_args(
        ["train", "--out", "x", "--val-fraction", "0.2", "--no-progress", "--channels-last"]
    )
    cfg = asdict(config_from_args(args))
    assert cfg == {
        **asdict(TrainConfig()),
        "val_fraction": 0.2,
        "progress": False,
        "channels_last": True,
    }


# ---------------------------------------------------------------- import graph


def import_graph() -> dict[str, set[str]]:
    """fxcore module -> the fxcore modules it imports anywhere in its source (lazy ones too)."""
    import ast
    from pathlib import Path

    root = Path(fxcore.__file__).parent
    names = {p.stem for p in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "fxcore":
                    deps |= {a.name for a in node.names if a.name in names}
                elif node.module.startswith("fxcore."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fxcore.")}
        graph[path.stem] = deps - {path.stem, "__init__"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_between_fxcore_modules() -> None:
    graph = import_graph()
    assert {"cli", "analysis_cli", "data", "registry", "train", "resume"} <= graph.keys()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_low_modules_stay_low() -> None:
    """Torch-free foundations import nothing above them; the dataset base knows no dataset."""
    graph = import_graph()
    assert graph["errors"] == set() and graph["argtypes"] == set()
    assert graph["registry"] <= {"errors", "data", "celeba", "mnist", "synthfaces"}
    assert graph["config"] <= {"argtypes", "registry", "errors"}
    assert graph["data"] <= {"errors"}


# ---------------------------------------------------------------- what each command imports

HEAVY = ("torch", "captum", "matplotlib", "cv2")
PROBE = """
import json, runpy, sys
sys.argv = ["fxcore", *json.loads(sys.argv[1])]
try:
    runpy.run_module("fxcore", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps([m for m in HEAVY if m in sys.modules]))
""".replace("HEAVY", repr(HEAVY))


def loaded_by(argv: list[str]) -> list[str]:
    """The heavy packages a fresh ``python -m fxcore ARGV`` process has imported when it ends."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(fxcore.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_runs_import_no_torch(tmp_path) -> None:
    assert loaded_by(["--help"]) == []
    assert loaded_by(["train", "--help"]) == []
    assert loaded_by(["runs", "--root", str(tmp_path)]) == []


def test_stats_imports_neither_captum_nor_matplotlib_nor_opencv(tiny_root, tmp_path) -> None:
    out = tmp_path / "mv.npz"
    argv = [
        "stats",
        "tiny-synth",
        "--root",
        str(tiny_root),
        "--run",
        "Smiling",
        "--layer",
        "features.0.weight",
        "--out",
        str(out),
    ]
    assert set(loaded_by(argv)) <= {"torch"}
    assert out.is_file()


def test_modules_stay_small_and_the_library_has_no_streamlit() -> None:
    from pathlib import Path

    repo = Path(fxcore.__file__).parents[1]
    for path in [*repo.glob("fxcore/*.py"), *repo.glob("app/*.py"), *repo.glob("app/views/*.py")]:
        lines = len(path.read_text().splitlines())
        assert lines <= 410, f"{path.relative_to(repo)} has {lines} lines; split it by concept"
    for path in repo.glob("fxcore/*.py"):
        assert "import streamlit" not in path.read_text(), path.name

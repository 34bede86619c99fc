"""The package's shape: one error base, no import circles, commands import only what they use."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import fxcore
from fxcore.core.errors import FxcoreError


def _fxcore_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(fxcore.__path__, "fxcore."))


def test_every_fxcore_exception_derives_from_the_one_base() -> None:
    found = []
    for name in _fxcore_modules():
        if name in ("fxcore.__main__", "fxcore.compare.figures"):
            continue  # __main__ runs the CLI; figures selects a matplotlib backend
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and obj.__module__.startswith("fxcore"):
                found.append(obj)
                assert issubclass(obj, FxcoreError), f"{obj.__module__}.{obj.__name__}"
    assert len(set(found)) >= 10


def test_cli_prints_any_fxcore_error_as_one_line(monkeypatch, capsys) -> None:
    from fxcore.cli import main as cli

    class Odd(FxcoreError):
        pass

    def boom(_args):
        raise Odd("what is wrong; what to do")

    monkeypatch.setattr(cli, "cmd_runs", boom)
    assert cli.main(["runs"]) == 1
    assert capsys.readouterr().err == "error: what is wrong; what to do\n"


def test_cli_lets_bugs_raise(monkeypatch) -> None:
    from fxcore.cli import main as cli

    def bug(_args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_runs", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["runs"])


def test_train_parser_is_built_from_the_config_defaults() -> None:
    from dataclasses import asdict

    from fxcore.cli.main import build_parser
    from fxcore.train.config import TrainConfig, config_from_args

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


# Packages from the bottom up: a module imports only from its own package and the ones before it.
LAYERS = (
    "core",
    "data",
    "models",
    "store",
    "upload",
    "train",
    "explain",
    "measures",
    "compare",
    "cli",
)


def import_graph() -> dict[str, set[str]]:
    """fxcore module ("store.runs") -> the fxcore modules it imports anywhere in its source."""
    import ast
    from pathlib import Path

    root = Path(fxcore.__file__).parent
    paths = [p for p in root.rglob("*.py") if p.name != "__init__.py" and p.parent != root]
    names = {".".join(p.relative_to(root).with_suffix("").parts) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        me = ".".join(path.relative_to(root).with_suffix("").parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("fxcore")
            ):
                base = node.module.removeprefix("fxcore").lstrip(".")
                for a in node.names:
                    full = f"{base}.{a.name}" if base else a.name
                    deps.add(full if full in names else base)
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name.removeprefix("fxcore.")
                    for a in node.names
                    if a.name.startswith("fxcore.")
                }
        graph[me] = {d for d in deps if d in names} - {me}
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
    assert {"cli.main", "cli.commands", "data.base", "data.registry", "train.loop"} <= graph.keys()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_every_module_lives_in_a_package_of_the_map() -> None:
    from pathlib import Path

    root = Path(fxcore.__file__).parent
    assert {p.name for p in root.glob("*.py")} == {"__init__.py", "__main__.py"}
    assert {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


def test_lower_packages_never_import_higher_ones() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        for dep in deps
        if rank[dep.split(".")[0]] > rank[mod.split(".")[0]]
    ]
    assert not bad, "; ".join(sorted(bad))


def test_low_modules_stay_low() -> None:
    """Torch-free foundations import nothing above them; the dataset base knows no dataset."""
    graph = import_graph()
    assert all(graph[m] <= {"core.errors"} for m in graph if m.startswith("core."))
    sources = {"data.celeba", "data.mnist", "data.synthfaces"}
    assert graph["data.registry"] <= {"core.errors", "data.base", *sources}
    assert graph["train.config"] <= {"core.argtypes", "data.registry", "core.errors"}
    assert graph["data.base"] <= {"core.errors"}


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
    for path in [
        *repo.glob("fxcore/**/*.py"),
        *repo.glob("app/*.py"),
        *repo.glob("app/views/*.py"),
    ]:
        lines = len(path.read_text().splitlines())
        assert lines <= 410, f"{path.relative_to(repo)} has {lines} lines; split it by concept"
    for path in repo.glob("fxcore/**/*.py"):
        assert "import streamlit" not in path.read_text(), path.name

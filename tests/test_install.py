"""``pip install .`` gives a working fxcore: its declared dependencies are there and the CLI runs.

Built offline: a fresh virtual environment sees this interpreter's installed packages (a ``.pth``
file), the wheel is built with their setuptools (``--no-build-isolation``) and installed with
``--no-deps --no-index``, so nothing is downloaded; the declared dependencies are then checked
against what is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK_DEPS = """
from importlib.metadata import requires, version, PackageNotFoundError
from packaging.requirements import Requirement
missing = []
reqs = [Requirement(r) for r in requires("fxcore")]
for r in reqs:
    if r.marker is not None:
        continue  # extras (the app) are optional
    try:
        if not r.specifier.contains(version(r.name), prereleases=True):
            missing.append(f"{r} (have {version(r.name)})")
    except PackageNotFoundError:
        missing.append(str(r))
names = {r.name.lower() for r in reqs}
assert {"torch", "safetensors", "numpy", "captum"} <= names, names
print("missing:", missing)
"""


@pytest.mark.slow
def test_pip_install_gives_a_working_cli(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    pytest.importorskip("packaging")
    src = tmp_path / "src"  # a copy: building must not write into the checkout
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "checkpoints",
            "tests",
            "benchmarks",
            "docs",
            "app",
            "build",
            "*.egg-info",
            "__pycache__",
            ".fxcore-cache",
            "study",
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    (Path(site) / "installed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(src),
        ],
        check=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    where = subprocess.run(
        [str(py), "-c", "import fxcore; print(fxcore.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert str(venv) in where.stdout, where.stdout  # the installed copy, not the checkout
    out = subprocess.run(
        [str(py), "-m", "fxcore", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "compare" in out.stdout
    deps = subprocess.run(
        [str(py), "-c", CHECK_DEPS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert deps.returncode == 0, deps.stderr
    assert deps.stdout.strip() == "missing: []", deps.stdout


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names of every non-stdlib, non-fxcore module that fxcore/ imports, by file."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "fxcore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "fxcore" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_imported_package_is_declared() -> None:
    """Every third-party package that fxcore/ imports is a dependency or an extra of pyproject."""
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    declared = {Requirement(r).name.lower().replace("_", "-") for r in reqs}
    dists = packages_distributions()
    dists.setdefault("dlib", ["dlib-bin"])  # the prebuilt wheel ships no top-level metadata
    undeclared = {}
    for module, files in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported by fxcore/ but not declared in pyproject.toml: {undeclared}"

"""The text output of ``runs`` and ``compare``: aligned columns, no NaN, one precision rule."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fxcore.cli.format import interval, number, table
from fxcore.cli.main import main


def test_one_precision_rule_and_missing_values() -> None:
    assert interval(0.9994, 0.9981, 1.0) == "0.999 [0.998, 1.000]"
    assert interval(-0.0012, -0.0034, 0.002) == "-0.001 [-0.003, 0.002]"
    assert interval(float("nan"), None, None) == "-"
    assert interval(0.5, float("nan"), 0.7) == "0.500 [-, 0.700]"
    assert number(None) == number(float("inf")) == "-"


def test_table_columns_are_as_wide_as_their_widest_cell() -> None:
    text = table(["name", "value"], [["a", "1.000"], ["a-much-longer-name", "22.000"]], right=[1])
    lines = text.splitlines()
    assert len({len(ln) for ln in lines}) == 1  # right-aligned last column: equal line lengths
    assert lines[2].startswith("a-much-longer-name  ")


def _columns(header: str, names: list[str]) -> list[int]:
    return [header.index(n) for n in names]


def test_runs_is_an_aligned_table_with_a_long_experiment_name(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = "an-experiment-with-a-really-rather-long-name-indeed"
    shutil.copytree(tiny_root / "tiny-synth", tmp_path / long)
    shutil.copytree(tiny_root / "tiny-mnist", tmp_path / "m")
    assert main(["runs", "--root", str(tmp_path)]) == 0
    header, *rows = capsys.readouterr().out.rstrip("\n").splitlines()
    starts = _columns(header, ["run", "model", "dataset", "epochs"])
    assert len(rows) == 3
    for row in rows:
        cells = row.split()
        # Every cell of the row begins where its header does, whatever the name's length.
        assert [row.index(c, s) for c, s in zip(cells[1:5], starts)] == starts, (header, row)
    assert rows[0].startswith(long + "  ")


@pytest.mark.parametrize("name", ["tiny-synth", "tiny-mnist"])
def test_compare_without_a_control_says_so_once_and_prints_no_nan(
    name: str, tiny_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", name, "--root", str(tiny_root), "--probe", "8", "--bootstrap", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out, re.I), out
    assert out.count("no control run") == 1
    assert "control CKA" not in out
    # Intervals: value and bounds with the same three decimals.
    for value, low, high in re.findall(r"(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]", out):
        assert {len(v.split(".")[1]) for v in (value, low, high)} == {3}, out
    if name == "tiny-synth":
        assert "CKA [95% CI]" in out and "accuracy on the probe images" in out

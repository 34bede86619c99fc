"""On a freshly trained SynthFaces pair, each model's Grad-CAM falls on its own attribute's region."""

from __future__ import annotations

from pathlib import Path

import pytest

from fxcore.analysis import localisation, pick_runs
from fxcore.runs import open_experiment


@pytest.mark.slow
def test_smiling_looks_at_the_mouth_and_male_at_its_cues(synth_pair: Path) -> None:
    exp = open_experiment(synth_pair)
    for run in exp.runs:
        assert run.metrics()[-1]["val_accuracy"] >= 0.95, (run.name, run.metrics())
    loc = localisation(exp, pick_runs(exp), n_probe=128, epochs=[2])
    smiling, male = loc["runs"]["Smiling"], loc["runs"]["Male"]
    # SynthFaces' ground-truth masks: "mouth" holds the Smiling cue; "Male" the brows, ears,
    # sideburns and hair beside the face (never the mouth).
    assert smiling["mouth"][0] > 2 * male["mouth"][0], loc
    assert male["Male"][0] > 1.3 * smiling["Male"][0], loc

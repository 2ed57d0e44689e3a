"""data-sample/ is the generator's output, byte for byte."""

import filecmp
from pathlib import Path

import pytest

from dacpipe.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # all of data-sample written again: 2 s
def test_data_sample_regenerates_identically(tmp_path):
    # through the command the data-sample README names
    assert main(["synth", str(tmp_path)]) == 0
    committed = ROOT / "data-sample"
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    kept = sorted(p.relative_to(committed) for p in committed.rglob("*")
                  if p.is_file() and p.name != "README.md")
    assert made == kept
    different = [str(p) for p in made if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert different == []

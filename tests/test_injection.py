"""A hostile or careless ``results_dir`` under Snakemake: a space works, a shell command is refused.

The rules' shell lines quote every path they interpolate (Snakemake's ``:q``),
and the schema refuses the characters a shell would read in ``results_dir``
(``$ ` ; | & quotes newlines``), so ``--config 'results_dir=res$(id>PWNED.txt)'``
stops at validation with one line and runs nothing. The project is one tiny
run with pressures typed in the sheet (three jobs), so each test takes a few
seconds.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dacpipe.core.errors import ConfigError
from dacpipe.io.config import validate_config
from dacpipe.run.store import read_points

ROOT = Path(__file__).resolve().parents[1]
PRESSURES_GPA = [0.5, 1.25, 2.0]


def _project(dest: Path, results_dir: str) -> Path:
    """The workflow with one run ``tiny`` whose sheet, in a folder with a space, types its pressures."""
    shutil.copy(ROOT / "Snakefile", dest)
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, dest / folder)
    data = dest / "my data"
    data.mkdir()
    rows = ["point\tpressure_GPa"] + [f"p{i}\t{p}" for i, p in enumerate(PRESSURES_GPA)]
    (data / "points.tsv").write_text("\n".join(rows) + "\n")
    (dest / "config" / "config.yaml").write_text(
        f"results_dir: {results_dir}\nruns:\n  tiny:\n    sheet: my data/points.tsv\n    pressure: {{gauge: sheet}}\n")
    return dest


def _snakemake(project: Path, *args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("value", ["res$(id>PWNED.txt)", "res`id>PWNED.txt`", "res;id>PWNED.txt", "a|b", "a&b",
                                   "it's", 'say "x"', "res\nid", "{run}", "-rf", " lead"])
def test_schema_refuses_shell_characters_in_results_dir(value):
    config = {"results_dir": value, "runs": {"r": {"sheet": "s.tsv", "pressure": {"gauge": "sheet"}}}}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert "\n" not in message and message.startswith("config: results_dir = ") and "is not allowed" in message


@pytest.mark.parametrize("value", ["results", "my results", "/data/visitor/ma1234/id15b/2024 run", "../res-1.2_b",
                                   "données/série+2", "results/"])
def test_schema_accepts_ordinary_folder_names(value):
    config = {"results_dir": value, "runs": {"r": {"sheet": "s.tsv", "pressure": {"gauge": "sheet"}}}}
    assert validate_config(config)["results_dir"] == value


@pytest.mark.workflow
def test_results_dir_with_a_space_runs_end_to_end(tmp_path):
    project = _project(tmp_path, "my results")
    out = _snakemake(project, "-p")   # -p: the shell commands, as run
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--out 'my results/tiny.h5'" in out.stdout + out.stderr
    points = read_points(project / "my results" / "tiny.h5", "tiny")
    np.testing.assert_array_equal(points["pressure_GPa"], PRESSURES_GPA)
    assert list(points["status"]) == ["ok"] * 3
    assert (project / "my results" / "tiny" / "logs" / "store.log").is_file()
    assert not (project / "my").exists()   # nothing split at the space


@pytest.mark.workflow
def test_command_in_results_dir_is_refused_and_never_run(tmp_path):
    project = _project(tmp_path, "results")
    out = _snakemake(project, "--config", "results_dir=res$(id>PWNED.txt)")
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "config: results_dir" in line]
    assert len(lines) == 1 and "results_dir = 'res$(id>PWNED.txt)' is not allowed" in lines[0], out.stderr[-2000:]
    assert not list(project.rglob("PWNED.txt")) and not Path("PWNED.txt").exists()
    assert not list(project.glob("res*"))   # no job ran

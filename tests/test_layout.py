"""The shape of the package, and the defects the layout review found (issue 10).

Each test here failed on the flat package it replaced.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, RUN

SRC = ROOT / "src" / "dacpipe"
DOMAINS = ("pressure", "integration", "xrd", "eos", "optical", "saxs")
# Which package may import which: core -> io -> domain stages -> run -> cli.
LEVEL = {"core": 0, "io": 1, **{d: 2 for d in DOMAINS}, "synth": 3, "run": 3, "cli": 4}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        yield path, parts


def _imports(path: Path, package: tuple[str, ...]):
    """The dacpipe subpackages a module imports (module- and function-level)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                if not node.module:
                    for alias in node.names:
                        yield tuple(target + [alias.name])
                    continue
                yield tuple(target)
            elif node.module and node.module.startswith("dacpipe."):
                yield tuple(node.module.split(".")[1:])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dacpipe."):
                    yield tuple(alias.name.split(".")[1:])


def test_imports_run_one_way():
    """No module imports a package above its own level (core -> io -> domain -> run -> cli),
    and domain stages never import h5py: the store is the only HDF5 writer."""
    wrong = []
    for path, parts in _modules():
        top = parts[0] if len(parts) > 1 else None
        if top not in LEVEL:
            continue
        package = parts[:-1]
        for target in _imports(path, package):
            if target and target[0] in LEVEL and LEVEL[target[0]] > LEVEL[top]:
                wrong.append(f"{'/'.join(parts)} imports {'.'.join(target)}")
        if top in DOMAINS and "import h5py" in path.read_text():
            wrong.append(f"{'/'.join(parts)} imports h5py")
    assert wrong == []


def test_every_domain_package_has_a_stage_with_the_one_signature():
    from dacpipe.core.results import StageContext, StageResult
    from dacpipe.run.stages import MARKER_PRESSURE, STAGES

    for domain in DOMAINS:
        assert (SRC / domain / "stage.py").is_file(), domain
    import importlib

    for target in [*STAGES.values(), MARKER_PRESSURE]:
        module, name = target.split(":")
        function = getattr(importlib.import_module(module), name)
        hints = inspect.get_annotations(function, eval_str=True)
        assert list(inspect.signature(function).parameters) == ["ctx"], target
        assert hints["ctx"] is StageContext and hints["return"] is StageResult, target


def test_no_module_is_a_flat_leftover():
    """Every module lives in a subpackage named for its stage or concept."""
    flat = [p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert flat == []


def test_units_from_names():
    from dacpipe.core.units import units_from_name

    assert units_from_name("K0pp_per_GPa") == "1/GPa"      # was "GPa"
    assert units_from_name("K0pp_err_per_GPa") == "1/GPa"
    assert units_from_name("alpha_eV_per_GPa") == "eV/GPa"
    assert units_from_name("beta_eV_per_GPa2") == "eV/GPa^2"
    assert units_from_name("K0_err_GPa") == "GPa"
    assert units_from_name("q1_err_A") == "1/angstrom" and units_from_name("a_err_A") == "angstrom"
    assert units_from_name("volume_fu_A3") == "angstrom^3" and units_from_name("reduced_chi2") is None


def test_numpy_floor_covers_what_the_code_calls():
    """np.trapezoid is NumPy 2; the declared floor must be a NumPy that has it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = next(d for d in project["project"]["dependencies"] if d.startswith("numpy"))
    version = re.search(r">=\s*([\d.]+)", floor).group(1)
    uses_trapezoid = any("np.trapezoid" in p.read_text() for p, _ in _modules())
    assert not uses_trapezoid or tuple(int(v) for v in version.split(".")[:2]) >= (2, 0), floor


def test_snakemake_files_point_only_inside_the_repository():
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]:
        assert "../shared" not in path.read_text(), path


def test_validate_fails_when_a_file_is_missing(tmp_path, capsys):
    from dacpipe.cli import main

    (tmp_path / "points.tsv").write_text("point\truby\na\tthere.txt\nb\tmissing.txt\n")
    (tmp_path / "there.txt").write_text("690 1\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"results_dir: {tmp_path}/results\nruns:\n  r:\n    sheet: {tmp_path}/points.tsv\n"
                      "    pressure: {gauge: ruby}\n")
    assert main(["validate", "--configfile", str(config)]) == 1
    assert "missing.txt: ruby file not found" in capsys.readouterr().err
    (tmp_path / "missing.txt").write_text("690 1\n")
    assert main(["validate", "--configfile", str(config)]) == 0


def test_an_unexpected_error_and_warnings_reach_the_log_file(tmp_path):
    """Snakemake rules pass --log: a traceback and a Python warning must land there, not only on stderr."""
    log = tmp_path / "job.log"
    probe = ("import sys, warnings\n"
             "from dacpipe.cli import commands, main\n"
             "def broken(args):\n"
             "    warnings.warn('a library grumbles', RuntimeWarning)\n"
             "    return 1 / 0\n"
             "commands.cmd_sheet = broken\n"
             f"sys.exit(main(['--log', {str(log)!r}, 'sheet', {str(tmp_path)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 1
    text = log.read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text and "a bug" in text
    assert "a library grumbles" in text


def test_figure_of_a_store_without_its_data_is_one_line_and_a_bug_is_not_hidden(tmp_path, monkeypatch):
    from dacpipe.core.errors import InputError
    from dacpipe.run import figures

    store = tmp_path / "s.h5"
    with h5py.File(store, "w") as h5:
        h5.attrs["default"] = "r"
        h5.create_group("r/points").create_dataset("pressure_GPa", data=np.zeros(2))
    with pytest.raises(InputError, match="the store has no phases"):
        figures.draw_figure("fractions", store, tmp_path / "f.png")

    def buggy(entry, plt, style=None):
        return {}["not a store path"]

    monkeypatch.setitem(figures.FIGURES, "f_f", buggy)
    with h5py.File(store, "a") as h5:
        h5.create_group("r/eos")
    with pytest.raises(KeyError, match="not a store path"):
        figures.draw_figure("f_f", store, tmp_path / "g.png")


def test_hkl_are_stored_as_integers(sample_results):
    """Miller indices [N, lines, 3] int, (0, 0, 0) padded: "1011" could be (10,1,1) or (1,0,11)."""
    with h5py.File(sample_results[0] / f"{RUN}.h5") as h5:
        group = h5[f"{RUN}/phases/HgTe-zb"]
        hkl, present, n_lines = group["hkl_used"][()], group["present"][()], group["n_lines"][()]
        assert "peaks_used" not in group
    assert hkl.dtype.kind == "i" and hkl.ndim == 3 and hkl.shape[2] == 3
    for i in np.flatnonzero(present):
        rows = [tuple(h) for h in hkl[i] if any(h)]
        assert len(rows) == n_lines[i] and (1, 1, 1) in rows


def test_phase_files_are_stored_under_their_file_name(tmp_path):
    """A phase named by a path is one group named for the file, in every stage."""
    from dacpipe.xrd.library import phase_key

    assert phase_key("/data/markers/au.jcpds") == "au.jcpds"
    assert phase_key("phases/x.cif") == "x.cif" and phase_key("HgTe-zb") == "HgTe-zb"


@pytest.mark.slow
def test_a_wheel_has_the_schema_and_the_library(tmp_path):
    """`pip install .` (not -e) gives a dacpipe that loads a config and its phase library."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True)
    target = tmp_path / "site"
    (wheel,) = wheels.glob("dacpipe-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import dacpipe, pathlib; assert 'site' in dacpipe.__file__, dacpipe.__file__\n"
             "from dacpipe.io.config import load_config\n"
             f"c = load_config([{str(ROOT / 'config' / 'config.yaml')!r}])\n"
             "from dacpipe.xrd.library import library_names\n"
             "print(len(c['runs']), len(library_names()))")
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs, phases = (int(v) for v in out.stdout.split())
    assert runs >= 2 and phases >= 13

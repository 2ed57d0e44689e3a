"""Pressure from an XRD marker (gold, platinum, NaCl) beside the sample, against known truth."""

import dataclasses
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.cli import main
from dacpipe.core.errors import ConfigError
from dacpipe.io.config import load_config
from dacpipe.run.config import run_config
from dacpipe.core.errors import InputError
from dacpipe.eos.models import pressure_GPa as eos_pressure_GPa
from dacpipe.xrd.indexing import IndexingSettings
from dacpipe.xrd.marker import STABLE_TO_GPA, marker_pressure_GPa, read_marker
from dacpipe.xrd.peaks import fit_peaks
from dacpipe.xrd.cells import cell_volume_A3
from dacpipe.xrd.library import get_phase
from dacpipe.run.store import read_points
from dacpipe.synth import xrd
from dacpipe.synth.detector import write_cbf

WAVELENGTH_A = xrd.XRD_GEOMETRY.wavelength_A
TWO_THETA_DEG = np.linspace(3.0, 22.0, 2000)
Q_A = 4 * np.pi / WAVELENGTH_A * np.sin(np.radians(TWO_THETA_DEG / 2))
SETTINGS = IndexingSettings.from_config({})


@pytest.mark.parametrize("name", ["Au", "Pt", "NaCl-B1", "Ne"])
@pytest.mark.parametrize("pressure", [0.0, 5.0, 30.0, 100.0])
def test_volume_to_pressure_inverts_the_library_cell(name, pressure):
    """The cell the library gives at P reads back as P (the EOS inversion is a root finder to ~1e-12)."""
    phase = get_phase(name)
    volume = cell_volume_A3(phase.cell_at(pressure))
    got, _ = marker_pressure_GPa(phase, volume, 0.0)
    assert got == pytest.approx(pressure, abs=1e-6)


def test_pressure_error_is_the_volume_error_through_the_eos():
    """sigma_P = K/V sigma_V: against a finite difference of the EOS itself, for gold at 10 GPa."""
    au = get_phase("Au")
    volume = cell_volume_A3(au.cell_at(10.0))
    sigma_v = 1e-3 * volume
    _, sigma_p = marker_pressure_GPa(au, volume, sigma_v)
    ratio = au.eos.V0_A3 / au.volume_A3
    central = (eos_pressure_GPa(au.eos, (volume - sigma_v / 2) * ratio)
               - eos_pressure_GPa(au.eos, (volume + sigma_v / 2) * ratio))
    assert sigma_p == pytest.approx(central, rel=1e-4)


def _pattern(pressure, marker, amount=xrd.MARKER_AMOUNT, seed=0):
    counts = xrd.hgte_pattern(TWO_THETA_DEG, pressure, marker=marker, marker_amount=amount)
    y = np.random.default_rng(seed).poisson(counts).astype(float)
    return fit_peaks(Q_A, y, np.sqrt(np.clip(y, 1, None)))


# The HgTe series' three phases all appear in these pressures (zinc blende,
# cinnabar, coexistences, rock salt); NaCl-B1 is kept below the rock-salt
# range, whose lines are in the same ratios as its own (see dacpipe.marker).
@pytest.mark.parametrize("marker, amount, pressures", [
    ("Au", xrd.MARKER_AMOUNT, [0.3, 3.0, 5.5, 8.5, 10.5]),
    ("Pt", xrd.MARKER_AMOUNT, [1.5, 7.0, 12.0]),
    ("NaCl-B1", 5.0, [1.0, 6.0]),
])
def test_marker_beside_the_hgte_sample_gives_the_true_pressure(marker, amount, pressures):
    """Found with no hint of the pressure, among the sample's lines, within 4 sigma.

    The lattice errors give sigma_P of 0.005-0.05 GPa on these patterns
    (20 nm powders: lines ~0.2 deg wide); a sigma above 0.1 GPa would mean
    the lattice was refined on too few or wrong lines.
    """
    phase = get_phase(marker)
    for i, pressure in enumerate(pressures):
        reading = read_marker(_pattern(pressure, marker, amount, seed=i).peaks, float(Q_A.max()), WAVELENGTH_A,
                              phase, SETTINGS, max_pressure_GPa=STABLE_TO_GPA.get(marker, 200.0))
        assert abs(reading.pressure_GPa - pressure) < 4 * reading.pressure_err_GPa, (marker, pressure)
        assert 0 < reading.pressure_err_GPa < 0.1
        assert (1, 1, 1) in reading.hkl_used or (2, 0, 0) in reading.hkl_used


def test_no_marker_in_the_pattern_is_a_clear_error():
    with pytest.raises(InputError, match=r"marker Au: \d+ of its lines found"):
        read_marker(_pattern(0.5, None).peaks, float(Q_A.max()), WAVELENGTH_A, get_phase("Au"), SETTINGS, 200.0)


def test_a_marker_without_eos_is_refused():
    still = dataclasses.replace(get_phase("Au"), eos=None)
    with pytest.raises(InputError, match="no equation of state"):
        read_marker(_pattern(0.5, "Au").peaks, float(Q_A.max()), WAVELENGTH_A, still, SETTINGS, 200.0)


def _marker_config(tmp_path, run_extra=""):
    path = tmp_path / "config.yaml"
    path.write_text(f"""results_dir: {tmp_path / 'results'}
runs:
  au:
    sheet: {tmp_path / 'points.tsv'}
    phases: [HgTe-zb, HgTe-cinnabar, HgTe-rs]
    pressure: {{gauge: xrd-marker, marker: Au}}
    xrd: {{poni: {tmp_path / 'xrd.poni'}, mask: {tmp_path / 'xrd.mask'}, npt: 400, polarization_factor: 0.99}}
{run_extra}""")
    return path


@pytest.mark.parametrize("change, message", [
    ("runs.au.pressure.marker=null", "pressure.marker is required with gauge xrd-marker"),
    ("runs.au.pressure.marker=Gold", "is not a library phase"),
    ("runs.au.pressure.marker=Aux", "did you mean 'Au'"),
])
def test_marker_config_errors_name_the_key(tmp_path, change, message):
    config = load_config([_marker_config(tmp_path)], [change])
    with pytest.raises(ConfigError, match=message):
        run_config(config, "au")


def test_marker_needs_an_xrd_stage(tmp_path):
    config = load_config([_marker_config(tmp_path)])
    del config["runs"]["au"]["xrd"]
    with pytest.raises(ConfigError, match="needs an xrd section"):
        run_config(config, "au")


PIPELINE_PRESSURES = {"m1": 0.8, "m2": 4.0, "m3": None, "m4": 9.0}   # None: a frame without gold


@pytest.fixture(scope="module")
def marker_run(tmp_path_factory):
    """A small run whose only gauge is gold in the XRD frames, through `dacpipe run`."""
    folder = tmp_path_factory.mktemp("marker")
    xrd.write_xrd_geometry(folder)
    rows = ["point\txrd"]
    for i, (point, pressure) in enumerate(PIPELINE_PRESSURES.items()):
        counts, _, _ = xrd.xrd_frame(pressure or 2.0, np.random.default_rng(100 + i),
                                     marker=None if pressure is None else "Au")
        write_cbf(folder / f"{point}.cbf", counts)
        rows.append(f"{point}\t{point}.cbf")
    (folder / "points.tsv").write_text("\n".join(rows) + "\n")
    assert main(["run", "--configfile", str(_marker_config(folder))]) == 0
    return folder / "results" / "au.h5"


def test_marker_pressures_in_the_store(marker_run):
    points = read_points(marker_run, "au")
    with h5py.File(marker_run) as h5:
        group = h5["au/pressure"]
        assert group.attrs["gauge"] == "xrd-marker" and group.attrs["marker"] == "Au"
        a_A, hkl, n_lines = group["marker/a_A"][()], group["marker/hkl_used"][()], group["marker/n_lines"][()]
        zb_present = h5["au/phases/HgTe-zb/present"][()]
    for i, (point, truth) in enumerate(PIPELINE_PRESSURES.items()):
        if truth is None:
            assert math.isnan(points["pressure_GPa"][i]) and math.isnan(a_A[i])
            assert points["status"][i].startswith("pressure: marker Au:")
            continue
        # Integrated 2D images (400 bins, Poisson noise): sigma_P ~ 0.01 GPa.
        assert abs(points["pressure_GPa"][i] - truth) < max(4 * points["pressure_err_GPa"][i], 0.01)
        assert abs(points["pressure_GPa"][i] - truth) < 0.05
        assert a_A[i] == pytest.approx(get_phase("Au").cell_at(truth)[0], rel=2e-4)
        # Miller indices as integers [N, lines, 3], padded with (0, 0, 0).
        assert hkl.dtype.kind == "i" and hkl.shape[1:] == (hkl.shape[1], 3)
        assert [1, 1, 1] in hkl[i].tolist() and [0, 0, 0] not in hkl[i][: int(n_lines[i])].tolist()
    # The sample is indexed with the marker's pressures: zinc blende at 0.8 and 4.0 GPa? Only at 0.8.
    assert list(zb_present[[0, 1, 3]]) == [True, False, False]


def test_the_phases_job_knows_the_marker():
    """Under Snakemake each job gets only the config sections its stage reads: the
    phases job of a marker-gauged run must get the pressure section, or the marker
    is left out of the fit (its lines then ruin every point's fit)."""
    from dacpipe.io.config import load_config
    from dacpipe.run.config import run_config
    from dacpipe.run.stages import config_sections

    config = load_config([Path(__file__).resolve().parents[1] / "config" / "config.yaml"])
    run = run_config(config, "cdse_nc")
    assert run["pressure"]["gauge"] == "xrd-marker"
    assert "pressure" in config_sections("phases", run)

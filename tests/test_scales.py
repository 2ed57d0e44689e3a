"""Pressure scales against numbers computed from their papers."""

import numpy as np
import pytest

from dacpipe.pressure.gauges import GAUGES
from dacpipe.pressure.scales import SCALES, get_scale, ruby_thermal_shift_nm, temperature_corrected_position


@pytest.mark.parametrize("name, expected_GPa", [
    # R1 = 700.00 nm, lambda0 = 694.24 nm at 298 K; hand-computed from each paper's formula.
    ("mao1986-hydrostatic", 16.24),
    ("dewaele2008", 16.51),
    ("shen2020", 16.24),
    ("piermarini1975", 15.78),
])
def test_ruby_scales_at_700nm(name, expected_GPa):
    assert get_scale(name).pressure_GPa(700.00, 694.24) == pytest.approx(expected_GPa, abs=0.01)


def test_mao_nonhydrostatic_uses_B5():
    # (1904/5) * ((700/694.24)^5 - 1) = 16.06 GPa
    assert get_scale("mao1986-nonhydrostatic").pressure_GPa(700.0, 694.24) == pytest.approx(16.06, abs=0.01)


def test_datchi1997_sm_and_akahama2006_diamond():
    # Sm:SrB4O7, dl = 10 nm: 4.032*10*(1+0.0929)/(1+0.232) = 35.77 GPa
    assert get_scale("datchi1997").pressure_GPa(695.41, 685.41) == pytest.approx(35.77, abs=0.01)
    # Diamond edge 1434 cm^-1 from 1334: d = 0.074963; 547 d (1 + 1.375 d) = 45.23 GPa
    assert get_scale("akahama2006").pressure_GPa(1434.0, 1334.0) == pytest.approx(45.23, abs=0.01)


@pytest.mark.parametrize("name", list(SCALES))
def test_round_trip(name):
    scale = SCALES[name]
    pressures = np.linspace(0.0, 150.0, 301)
    back = scale.pressure_GPa(scale.position_at(pressures))
    assert np.max(np.abs(back - pressures)) < 1e-6


@pytest.mark.parametrize("name", list(SCALES))
def test_slope_matches_inverse(name):
    scale = SCALES[name]
    x = scale.position_at(40.0)
    h = 1e-3
    numeric = 2 * h / (scale.position_at(40.0 + h) - scale.position_at(40.0 - h))
    assert scale.slope_GPa_per_unit(x) == pytest.approx(numeric, rel=1e-6)


def test_scale_uncertainty_published_or_nan():
    # Shen 2020: A = 1870(10), B = 5.63(3). At 700 nm: d = 0.0082968,
    # dP/dA * 10 = d (1 + B d) * 10 = 0.08684, dP/dB * 0.03 = 1870 d^2 * 0.03 = 0.00386 -> 0.08693 GPa.
    assert get_scale("shen2020").scale_sigma_GPa(700.0, 694.24) == pytest.approx(0.08693, abs=1e-4)
    # Piermarini: 5.76 nm * 0.016 GPa/nm
    assert get_scale("piermarini1975").scale_sigma_GPa(700.0, 694.24) == pytest.approx(0.0922, abs=1e-4)
    assert np.isnan(get_scale("mao1986-hydrostatic").scale_sigma_GPa(700.0, 694.24))


def test_wrong_gauge_or_name():
    with pytest.raises(ValueError, match="sm-srb4o7"):
        get_scale("datchi1997", "ruby")
    with pytest.raises(ValueError, match="unknown pressure scale"):
        get_scale("mao1968")


def test_ruby_temperature_shift():
    assert ruby_thermal_shift_nm(296.0) == 0.0
    # Datchi 2007 eq. 2 at 500 K: dT = 204 -> 1.5218 - 0.1253 + 0.0744 = 1.4710 nm
    assert ruby_thermal_shift_nm(500.0) == pytest.approx(1.4710, abs=1e-3)
    # Continuous at 296 K and monotonic below (R1 moves to shorter wavelength on cooling).
    t = np.array([60.0, 100.0, 200.0, 295.9, 296.0, 296.1])
    shift = ruby_thermal_shift_nm(t)
    assert np.all(np.diff(shift) > 0)
    assert abs(shift[3]) < 1e-3


def test_temperature_correction_removes_thermal_shift():
    # A ruby at 400 K and ambient pressure reads 0 GPa once corrected.
    hot = 694.24 + ruby_thermal_shift_nm(400.0) - ruby_thermal_shift_nm(298.0)
    corrected = temperature_corrected_position(hot, 400.0, 298.0)
    assert get_scale("shen2020").pressure_GPa(corrected, 694.24) == pytest.approx(0.0, abs=1e-9)
    # Other gauges are not moved.
    assert temperature_corrected_position(690.0, 400.0, 298.0, "none") == 690.0
    assert GAUGES["sm-srb4o7"].thermal_shift and GAUGES["ruby"].thermal_shift
    assert not GAUGES["diamond-raman"].thermal_shift


def test_the_gauge_registry_does_not_bring_the_fitting_code():
    """Every job that validates a ruby run's config reads the registry (default
    scale, axis); the fits' scipy.signal, .ndimage and .optimize cost 0.4 s of
    each such job's start and come only when a spectrum is fitted."""
    import subprocess
    import sys

    code = ("import sys; from dacpipe.io.config import validate_config; from dacpipe.run.config import run_config; "
            "run = run_config(validate_config({'runs': {'r': {'sheet': 's.tsv', 'pressure': {'gauge': 'ruby'}}}}), 'r'); "
            "assert run['pressure']['scale'] == 'shen2020'; "
            "print(sorted(m for m in ('scipy.signal', 'scipy.ndimage', 'scipy.optimize') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

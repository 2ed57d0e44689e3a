"""Real ruby spectra from other projects (../shared/real-data/ruby), read and fitted."""

import h5py
import pytest

from dacpipe.cli import main
from dacpipe.pressure.fluorescence import fit_ruby
from dacpipe.io.spectra import read_spectrum

pytestmark = pytest.mark.realdata


def test_trax_ruby_spe_gives_trax_r1(real_data):
    # T-Rax sums rows 11-24 over columns 82-752 of this SPE frame and finds
    # R1 = 694.32 nm (its test asserts two decimals).
    spectrum = read_spectrum(real_data / "ruby" / "Ruby.spe", rows=(11, 24), columns=(82, 752))
    fit = fit_ruby(spectrum.x, spectrum.y)
    assert fit.r1_nm == pytest.approx(694.32, abs=0.01)
    assert fit.r1_err_nm < 0.005


@pytest.mark.parametrize("name, kwargs", [
    ("test_data1.txt", {}),
    ("test_data2.txt", {}),
    ("rubis.txt", {"x_unit": "raman_shift_cm-1", "laser_nm": 568.189}),
])
def test_other_formats_fit_near_ambient(real_data, name, kwargs):
    # Spectra taken near ambient pressure: R1 between 694 and 696 nm, a
    # well-determined doublet (R1 - R2 about 1.4 nm).
    spectrum = read_spectrum(real_data / "ruby" / name, **kwargs)
    fit = fit_ruby(spectrum.x, spectrum.y)
    assert 694.0 < fit.r1_nm < 696.0 and fit.r1_err_nm < 0.01
    assert 1.2 < fit.r1_nm - fit.r2_nm < 1.7


def test_pipeline_on_the_real_spe(real_data, tmp_path):
    sheet = tmp_path / "points.tsv"
    sheet.write_text(f"point\truby\nreal\t{real_data / 'ruby' / 'Ruby.spe'}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"results_dir: {tmp_path / 'results'}\nruns:\n  trax:\n    sheet: {sheet}\n"
                      "    pressure:\n      scale: shen2020\n      spectrum: {rows: [11, 24], columns: [82, 752]}\n")
    assert main(["run", "--configfile", str(config)]) == 0
    with h5py.File(tmp_path / "results" / "trax.h5") as h5:
        r1 = h5["trax/pressure/before/R1_nm"][0]
        pressure = h5["trax/points/pressure_GPa"][0]
        assert h5["trax/points/status"].asstr()[0] == "ok"
    # Shen 2020 with its own R1_0 = 694.24 nm: 0.08 nm above it is 0.22 GPa.
    assert r1 == pytest.approx(694.32, abs=0.01)
    assert pressure == pytest.approx(1870 * (r1 - 694.24) / 694.24 * (1 + 5.63 * (r1 - 694.24) / 694.24), abs=1e-6)

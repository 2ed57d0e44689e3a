"""Hydrostaticity: the medium's limits, R1 broadening and the gradient from rubies at several places."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from dacpipe.core.errors import SheetError
from dacpipe.core.results import StageContext
from dacpipe.io.config import validate_section
from dacpipe.io.sheet import read_sheet
from dacpipe.pressure import stage
from dacpipe.pressure.gauges import get_gauge
from dacpipe.pressure.hydrostatic import BROADENING_FACTOR, finish_pressure, line_shape, pressure_gradient, r1_r2_splitting_cm1
from dacpipe.pressure.media import get_medium, media, medium_regime
from dacpipe.pressure.scales import get_scale
from dacpipe.synth.ruby import ruby_spectrum, write_spectrum

SHEN = get_scale("shen2020")
SQRT12 = 2.0 * math.sqrt(3.0)


def test_every_medium_of_the_schema_has_limits_with_sources():
    schema = yaml.safe_load((Path(stage.__file__).parents[1] / "io" / "schema.yaml").read_text())
    names = {e for e in schema["$defs"]["pressure"]["properties"]["medium"]["enum"] if e is not None}
    assert names == set(media())
    for medium in media().values():
        # a limit with no source must be a definition (solid media, no medium), marked confirmed
        assert medium.sources or (medium.confirmed and medium.hydrostatic_GPa == 0.0)


def test_regime_follows_the_limits():
    me = get_medium("4:1 methanol-ethanol")   # 10.5 GPa hydrostatic, 20 GPa quasi-hydrostatic
    assert list(medium_regime([0.0, 10.4, 12.0, 25.0, math.nan], me)) == \
        ["hydrostatic", "hydrostatic", "quasi-hydrostatic", "non-hydrostatic", "unknown"]
    # no quasi-hydrostatic limit known: past the hydrostatic one is non-hydrostatic (the cautious reading)
    assert list(medium_regime([14.0, 16.0], get_medium("Ne"))) == ["hydrostatic", "non-hydrostatic"]
    assert list(medium_regime([3.0], get_medium("NaCl"))) == ["non-hydrostatic"]
    assert list(medium_regime([3.0], None)) == ["unknown"]


def test_gradient_is_the_spread_and_its_rectangular_uncertainty():
    g = pressure_gradient([5.0, 5.6, 5.3, math.nan])
    assert g.n == 3
    assert g.range_GPa == pytest.approx(0.6)
    assert g.std_GPa == pytest.approx(0.3)
    assert g.err_GPa == pytest.approx(0.6 / SQRT12)
    assert math.isnan(pressure_gradient([5.0]).range_GPa)


def test_line_shape_against_the_low_pressure_width():
    fwhm = [0.50, 0.52, 0.51, 0.90, 1.20]
    r1 = [694.5, 694.7, 696.0, 700.0, 700.0]
    r2 = [1e7 / (1e7 / x + 29.0) for x in r1[:4]] + [1e7 / (1e7 / r1[4] + 33.0)]
    pressure = [0.5, 1.2, 5.0, 20.0, 20.0]
    temperature = [298.0, 298.0, 298.0, 298.0, 400.0]  # the last one hot: broad for another reason
    shape = line_shape(fwhm, r1_r2_splitting_cm1(r1, r2), pressure, temperature)
    assert shape.reference_fwhm_nm == pytest.approx(0.51)   # median of the points within 1 GPa of 0.5
    assert shape.width_ratio[3] == pytest.approx(0.90 / 0.51)
    assert list(shape.broadened) == [False, False, False, True, False]
    assert math.isnan(shape.width_ratio[4])
    assert shape.splitting_cm1[0] == pytest.approx(29.0, abs=1e-6)
    assert shape.splitting_change_cm1[4] == pytest.approx(4.0, abs=1e-6)


def test_sheet_takes_extra_gauge_columns(tmp_path):
    path = tmp_path / "points.tsv"
    path.write_text("point\truby\truby_2\truby_3\np1\ta.txt\tb.txt\t\n")
    sheet = read_sheet(path)
    assert sheet.gauge_position_columns() == ("ruby_2", "ruby_3")
    assert sheet.points[0].files["ruby_2"] == str(tmp_path / "b.txt")
    assert "ruby_3" not in sheet.points[0].files
    path.write_text("point\truby\truby_10\np1\ta.txt\tb.txt\n")
    with pytest.raises(SheetError, match="unknown column 'ruby_10'"):
        read_sheet(path)


def _ruby(path: Path, pressure_GPa: float, seed: int, lorentz_fwhm_nm: float = 0.35) -> str:
    x, y = ruby_spectrum(float(SHEN.position_at(pressure_GPa)), np.random.default_rng(seed),
                         lorentz_fwhm_nm=lorentz_fwhm_nm, spike_probability=0.0)
    write_spectrum(path, x, y)
    return path.name


def _voigt_fwhm(lorentz: float, gauss_sigma: float) -> float:
    """Olivero & Longbothum (1977), good to 0.02 %."""
    gauss = 2.0 * math.sqrt(2.0 * math.log(2.0)) * gauss_sigma
    return 0.5346 * lorentz + math.sqrt(0.2166 * lorentz ** 2 + gauss ** 2)


def test_stage_flags_medium_broadening_and_stores_the_gradient(tmp_path):
    rows = [
        f"p1\t{_ruby(tmp_path / 'a1.txt', 1.0, 1)}\t\t298",
        f"p2\t{_ruby(tmp_path / 'a2.txt', 5.0, 2)}\t{_ruby(tmp_path / 'b2.txt', 5.0, 3)}\t298",
        # past 10.5 GPa in 4:1 methanol-ethanol, R1 broadened, a second ruby 0.6 GPa higher
        f"p3\t{_ruby(tmp_path / 'a3.txt', 12.0, 4, 0.9)}\t{_ruby(tmp_path / 'b3.txt', 12.6, 5, 0.9)}\t298",
    ]
    (tmp_path / "points.tsv").write_text("\n".join(["point\truby\truby_2\ttemperature_K", *rows]) + "\n")
    cfg = validate_section("pressure", {"medium": "4:1 methanol-ethanol"})
    cfg["scale"] = get_gauge(cfg["gauge"]).default_scale
    ctx = StageContext(run_id="t", stage="pressure", sheet=read_sheet(tmp_path / "points.tsv"),
                       run={"pressure": cfg})
    # the broadening is judged on the joined series, the step that spans the chunks
    result = finish_pressure(ctx, stage.run(ctx))
    d = result.datasets
    assert list(d["medium_regime"]) == ["hydrostatic", "hydrostatic", "quasi-hydrostatic"]
    assert result.attrs["medium_hydrostatic_limit_GPa"] == 10.5
    assert "Klotz" in result.attrs["medium_limit_sources"]
    assert result.status[0] == "ok" and result.status[1] == "ok"
    assert "past the hydrostatic limit" in result.status[2]
    assert "non-hydrostatic broadening?" in result.status[2]
    # The width ratio is that of the two Voigt lines the spectra were made with
    # (instrument sigma 0.06 nm): the pseudo-Voigt fit recovers a FWHM to ~2 %.
    truth = _voigt_fwhm(0.9, 0.06) / _voigt_fwhm(0.35, 0.06)
    assert truth > BROADENING_FACTOR
    assert d["R1_width_ratio"][2] == pytest.approx(truth, rel=0.05)
    assert d["R1_width_ratio"][1] == pytest.approx(1.0, abs=0.05)
    # Gradient: 0.6 GPa at p3, none at p2 (same pressure), within the two readings' fit errors.
    fit_err = d["pressure_err_fit_GPa"]
    assert abs(d["pressure_gradient_GPa"][2] - 0.6) < 4 * math.sqrt(2) * fit_err[2]
    assert abs(d["pressure_gradient_GPa"][1]) < 4 * math.sqrt(2) * fit_err[1]
    assert math.isnan(d["pressure_gradient_GPa"][0])      # one ruby: no gradient
    assert d["ruby_2/pressure_GPa"][2] == pytest.approx(12.6, abs=4 * fit_err[2])
    # the gradient joins the random part (one ruby column: no drift)
    expected = math.hypot(fit_err[2], d["pressure_gradient_GPa"][2] / SQRT12)
    assert d["pressure_random_err_GPa"][2] == pytest.approx(expected, rel=1e-9)
    assert d["pressure_err_GPa"][2] == pytest.approx(math.hypot(expected, d["pressure_sys_err_GPa"][2]), rel=1e-9)
    assert d["pressure_random_err_GPa"][0] == pytest.approx(fit_err[0], rel=1e-9)


def test_no_medium_no_flag(tmp_path):
    (tmp_path / "points.tsv").write_text(f"point\truby\np1\t{_ruby(tmp_path / 'a.txt', 30.0, 7)}\n")
    cfg = validate_section("pressure", {})
    cfg["scale"] = get_gauge(cfg["gauge"]).default_scale
    ctx = StageContext(run_id="t", stage="pressure", sheet=read_sheet(tmp_path / "points.tsv"),
                       run={"pressure": cfg})
    result = finish_pressure(ctx, stage.run(ctx))
    assert result.status == ["ok"]
    assert list(result.datasets["medium_regime"]) == ["unknown"]
    assert result.attrs["medium"] == "unknown"


def test_the_broadening_check_applied_again_says_it_once():
    """dacpipe watch applies the whole-series step to a spliced series whose
    statuses already hold its warning: said once, and taken back where the
    width no longer counts as broadened."""
    import dataclasses as _dc

    from dacpipe.core.results import StageContext, StageResult
    from dacpipe.io.sheet import Point, Sheet

    ids = ["p1", "p2", "p3", "p4"]
    result = StageResult(stage="pressure", point_ids=ids, status=["ok"] * 4, datasets={
        "R1_fwhm_nm": np.array([0.40, 0.41, 0.39, 1.2]), "R1_R2_splitting_cm1": np.full(4, 29.0),
        "pressure_GPa": np.array([0.2, 0.5, 0.8, 12.0])})
    sheet = Sheet(path=None, points=tuple(Point(point=i) for i in ids), columns=("point",))
    ctx = StageContext(run_id="r", stage="pressure", sheet=sheet, run={})
    once = finish_pressure(ctx, result)
    assert once.status[:3] == ["ok"] * 3 and once.status[3].endswith("non-hydrostatic broadening?")
    twice = finish_pressure(ctx, once)
    assert twice.status == once.status
    narrower = _dc.replace(once, datasets={**once.datasets, "R1_fwhm_nm": np.array([0.40, 0.41, 0.39, 0.42])})
    assert finish_pressure(ctx, narrower).status == ["ok"] * 4


# ---------------------------------------------------------------------------
# data-sample: the media of config/config.yaml and hgte_6nm's second ruby

def _store_pressure(results: Path, run: str):
    import h5py

    with h5py.File(results / f"{run}.h5") as h5:
        g = h5[f"{run}/pressure"]
        datasets = {}
        g.visititems(lambda name, obj: datasets.__setitem__(name, obj.asstr()[()] if obj.dtype.kind == "O"
                                                           else obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return datasets, dict(g.attrs), list(h5[f"{run}/points/status"].asstr()[()])


def _per_reading_err_GPa(d: dict, group: str, x0: float) -> np.ndarray:
    """One spectrum's fit error in GPa: its R1 standard error through dP/dR1."""
    return np.abs(get_scale("mao1986-hydrostatic").slope_GPa_per_unit(d[f"{group}/R1_nm"], x0)) * d[f"{group}/R1_err_nm"]


@pytest.mark.slow  # the whole data-sample pipeline (session fixture)
def test_sample_hgte_6nm_gradient_from_its_second_ruby(sample_results):
    from dacpipe.synth import read_truth

    results, _ = sample_results
    root = Path(__file__).resolve().parents[1]
    truth = read_truth(root / "data-sample" / "hgte_6nm" / "truth.tsv")
    d, attrs, status = _store_pressure(results, "hgte_6nm")
    assert list(attrs["gauge_position_columns"]) == ["ruby_2"]
    # The gradient is read against the ruby_before spectrum (taken with ruby_2):
    # truth |P_ruby_2 - P_before|, 0.015 to 0.24 GPa here.
    expected = np.abs(truth["pressure_ruby_2_GPa"] - truth["pressure_before_GPa"])
    # Tolerance: 4 sigma of the difference of two independent readings, each
    # sigma its R1 fit error through dP/dR1 (~0.003 GPa); both rubies sit on one
    # scale at one temperature, so scale and lambda0 errors cancel in the spread.
    x0 = attrs["x0"]
    err_before, err_2 = _per_reading_err_GPa(d, "before", x0), _per_reading_err_GPa(d, "ruby_2", x0)
    sigma = np.hypot(err_before, err_2)
    assert np.all(sigma < 0.01)
    assert np.all(np.abs(d["pressure_gradient_GPa"] - expected) < 4 * sigma), (d["pressure_gradient_GPa"], expected)
    assert np.all(np.abs(d["ruby_2/pressure_GPa"] - truth["pressure_ruby_2_GPa"]) < 4 * err_2)
    assert list(d["ruby_2/status"]) == ["ok"] * 5
    # Two readings: the std (ddof 1) is the range / sqrt 2; the rectangular
    # uncertainty range / (2 sqrt 3) joins the random part of each point's error.
    np.testing.assert_allclose(d["pressure_gradient_std_GPa"], d["pressure_gradient_GPa"] / math.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(d["pressure_err_gradient_GPa"], d["pressure_gradient_GPa"] / SQRT12, rtol=1e-9)
    random = np.sqrt(d["pressure_err_fit_GPa"] ** 2 + d["pressure_err_drift_GPa"] ** 2
                     + d["pressure_err_gradient_GPa"] ** 2)
    np.testing.assert_allclose(d["pressure_random_err_GPa"], random, rtol=1e-9)
    # The point's pressure stays that of the ruby by the sample (before and after), not ruby_2's.
    assert np.all(np.abs(d["pressure_GPa"] - 0.5 * (d["before/pressure_GPa"] + d["after/pressure_GPa"])) < 1e-9)
    assert list(d["medium_regime"]) == ["hydrostatic"] * 5   # 4:1 methanol-ethanol to 4.8 GPa
    # the pressure stage has nothing to say of these points (the optical stage may: QD spectra have no Urbach tail)
    assert not [part for s in status for part in s.split("; ") if part.startswith("pressure:")], status


@pytest.mark.slow  # the whole data-sample pipeline (session fixture)
def test_sample_media_regimes_and_their_sources(sample_results):
    from dacpipe.synth import read_truth

    results, config = sample_results
    runs = yaml.safe_load(Path(config).read_text())["runs"]
    root = Path(__file__).resolve().parents[1]
    for run in ("hgte_thz", "hgte_6nm", "nc_saxs"):
        d, attrs, status = _store_pressure(results, run)
        medium = get_medium(runs[run]["pressure"]["medium"])
        assert attrs["medium"] == medium.key
        assert attrs["medium_hydrostatic_limit_GPa"] == medium.hydrostatic_GPa
        np.testing.assert_equal(attrs["medium_quasi_hydrostatic_limit_GPa"], medium.quasi_hydrostatic_GPa)
        assert attrs["medium_limits_confirmed"] == medium.confirmed
        assert "Klotz" in attrs["medium_limit_sources"] and "(2009)" in attrs["medium_limit_sources"]
        # each point's regime is its measured pressure against the limits, and every
        # point whose true pressures (before and after) are below the limit is hydrostatic
        assert list(d["medium_regime"]) == list(medium_regime(d["pressure_GPa"], medium))
        truth = read_truth(root / "data-sample" / run / "truth.tsv")
        highest = np.fmax(truth["pressure_before_GPa"], truth["pressure_after_GPa"])
        below = highest < medium.hydrostatic_GPa - 0.05   # 0.05 GPa: >10 sigma of a ruby reading
        assert below.all(), f"{run}: data-sample is meant to stay below {medium.name}'s limit"
        assert all(r == "hydrostatic" for r in d["medium_regime"][below])
        assert not any("past the hydrostatic limit" in s for s in status)
        # R1 width and splitting per point, against the run's low-pressure ones
        assert attrs["R1_reference_fwhm_nm"] == pytest.approx(0.41, abs=0.02)  # Voigt of 0.35+0.02P nm, 0.06 nm
        assert np.all(np.abs(d["R1_R2_splitting_change_cm1"]) < 0.2)           # the synth's splitting is constant

"""Campaigns: the runs of one study compared, from their stores (dacpipe.run.campaign)."""

import hashlib
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT
from dacpipe.cli import main
from dacpipe.core.errors import ConfigError, InputError
from dacpipe.io.config import validate_config
from dacpipe.run.campaign import (bracket_uncertainty_GPa, build_campaign, campaign_job_config, campaign_path,
                                  median_with_error, read_campaign, summarize_store, transition_rows, write_campaign)
from dacpipe.synth import read_truth

# --------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------


def test_bracket_uncertainty_is_rectangular_half_width_over_sqrt3():
    # 2.0-3.0 GPa: half-width 0.5, sigma 0.5 / sqrt(3) = 0.288675 (GUM 4.3.7)
    assert bracket_uncertainty_GPa(2.0, 3.0) == pytest.approx(0.5 / math.sqrt(3), rel=1e-12)
    # the larger point error added in quadrature
    assert bracket_uncertainty_GPa(3.0, 2.0, 0.1, 0.2) == pytest.approx(math.hypot(0.5 / math.sqrt(3), 0.2))
    assert math.isnan(bracket_uncertainty_GPa(float("nan"), 2.0))


def test_bracket_uncertainty_covers_a_uniform_transition():
    """Pull test: transitions drawn uniformly inside the bracket scatter round
    its midpoint with the standard deviation the function gives (within 2 %:
    20,000 draws estimate a standard deviation to 0.5 %)."""
    rng = np.random.default_rng(1)
    lo, hi = 4.2, 5.0
    draws = rng.uniform(lo, hi, 20_000)
    assert np.std(draws - (lo + hi) / 2) == pytest.approx(bracket_uncertainty_GPa(lo, hi), rel=0.02)


def test_median_with_error_pull():
    """Medians of 41 normal values (sigma 0.3) scatter by the standard error the
    function predicts: sqrt(pi/2) sigma / sqrt(n) holds to ~3 % at n = 41
    (Kenney & Keeping); 3000 trials estimate the scatter to ~1.3 %, so 8 %."""
    rng = np.random.default_rng(2)
    samples = rng.normal(6.0, 0.3, (3000, 41))
    predicted = np.array([median_with_error(s)[1] for s in samples[:200]])
    medians = np.median(samples, axis=1)
    assert np.std(medians) == pytest.approx(np.mean(predicted), rel=0.08)
    assert np.mean(medians) == pytest.approx(6.0, abs=3 * 0.3 * 1.2533 / np.sqrt(41 * 3000))


def test_median_with_error_edges():
    # A constant series keeps its points' own errors (rms 0.02 over 4 points).
    value, error = median_with_error([5.0, 5.0, 5.0, 5.0, np.nan], [0.02, 0.02, 0.02, 0.02, np.nan])
    assert value == 5.0 and error == pytest.approx(math.sqrt(math.pi / 2) * 0.02 / 2)
    assert median_with_error([7.0, np.nan], [0.1, np.nan]) == (7.0, 0.1)
    assert all(math.isnan(v) for v in median_with_error([np.nan, np.nan]))


def test_transition_rows_brackets_onset_and_end():
    table = {"from_phase": np.array(["A"], object), "to_phase": np.array(["B"], object),
             "onset_GPa": np.array([2.5]), "end_GPa": np.array([4.0]), "direction": np.array(["up"], object),
             "onset_point": np.array(["p3"], object), "end_point": np.array(["p4"], object)}
    rows = transition_rows("r", table, ["p1", "p2", "p3", "p4"], [1.0, 2.0, 3.0, 5.0], [0.1, 0.1, 0.1, 0.3])
    assert rows[0]["onset_err_GPa"] == pytest.approx(math.hypot(0.5 / math.sqrt(3), 0.1))
    assert rows[0]["end_err_GPa"] == pytest.approx(math.hypot(1.0 / math.sqrt(3), 0.3))
    assert (rows[0]["onset_GPa"], rows[0]["end_GPa"], rows[0]["direction"]) == (2.5, 4.0, "up")


# --------------------------------------------------------------------------
# Tiny stores with known values
# --------------------------------------------------------------------------


def _write_store(path: Path, run: str, *, K0: float, onset: float, alpha: float | None, sizes, saxs: bool = False):
    """A store with only what a campaign reads, at known values."""
    n = len(sizes)
    pressure = np.linspace(0.5, 0.5 + n - 1, n)
    with h5py.File(path, "w") as h5:
        h5.attrs["default"] = run
        e = h5.create_group(run)
        pts = e.create_group("points")
        pts["point"] = np.array([f"p{i}" for i in range(n)], dtype=h5py.string_dtype())
        pts["pressure_GPa"], pts["pressure_err_GPa"] = pressure, np.full(n, 0.05)
        phases = e.create_group("phases")
        phases.attrs["phases"] = np.array(["X-lo", "X-hi"], dtype=h5py.string_dtype())
        for name in ("X-lo", "X-hi"):
            g = phases.create_group(name)
            g["crystallite_nm"] = np.asarray(sizes, float) if name == "X-lo" else np.full(n, np.nan)
            g["crystallite_err_nm"] = np.full(n, 0.1)
            g["volume_fu_A3"] = 50.0 * (1 - 0.01 * pressure)
            g["volume_fu_err_A3"] = np.full(n, 0.05)
        eos = e.create_group("eos/X-lo")
        for key, value in (("V0_fu_A3", 50.0), ("V0_fu_err_A3", 0.1), ("K0_GPa", K0), ("K0_err_GPa", 2.0),
                           ("Kp", 4.0), ("Kp_err", 0.5)):
            eos[key] = value
        eos["model"] = "bm3"
        tr = e.create_group("transitions")
        for key, value in (("from_phase", "X-lo"), ("to_phase", "X-hi"), ("direction", "up"),
                           ("onset_point", "p2"), ("end_point", "p3")):
            tr[key] = np.array([value], dtype=h5py.string_dtype())
        tr["onset_GPa"], tr["end_GPa"] = np.array([onset]), np.array([onset + 1.0])
        if alpha is not None:
            fit = e.create_group("optical/band_gap/fit/X-lo")
            fit["E0_eV"], fit["alpha_eV_per_GPa"], fit["alpha_err_eV_per_GPa"] = 1.0, alpha, 0.001
            fit["pressure_min_GPa"], fit["pressure_max_GPa"] = pressure[0], pressure[-1]
            gap = e["optical/band_gap"]
            gap["pressure_GPa"], gap["band_gap_eV"] = pressure, 1.0 + alpha * pressure
            gap["band_gap_err_eV"] = np.full(n, 0.002)
        if saxs:
            sl = e.create_group("superlattice")
            sl["d_A"] = 100.0 - pressure
            sl["d_A"][0] = np.nan  # the lowest-pressure point has no spacing: the next one is taken
            sl["d_err_A"] = np.full(n, 0.2)
    return path


@pytest.fixture
def two_stores(tmp_path):
    a = _write_store(tmp_path / "a.h5", "run_a", K0=40.0, onset=2.3, alpha=0.03, sizes=[9.0, 9.2, 8.8, 9.0])
    b = _write_store(tmp_path / "b.h5", "run_b", K0=45.0, onset=3.1, alpha=None, sizes=[6.0, np.nan, 6.0, 6.0],
                     saxs=True)
    return a, b


def test_summary_reads_the_known_values(two_stores):
    a, b = two_stores
    sa, sb = summarize_store(a), summarize_store(b, "run_b")
    assert sa.store_sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    lo = sa.phases[0]
    assert (lo["phase"], lo["model"], lo["K0_GPa"], lo["Kp"], lo["V0_fu_A3"]) == ("X-lo", "bm3", 40.0, 4.0, 50.0)
    assert lo["dEg_dP_eV_per_GPa"] == 0.03 and lo["crystallite_nm"] == 9.0
    # X-hi: no EOS, no fit, never sized: NaN, not a number made up
    hi = sa.phases[1]
    assert all(math.isnan(hi[k]) for k in ("K0_GPa", "dEg_dP_eV_per_GPa", "crystallite_nm"))
    assert math.isnan(sb.phases[0]["dEg_dP_eV_per_GPa"])
    # Transition: onset between p1 (1.5 GPa) and p2 (2.5 GPa)
    assert sa.transitions[0]["onset_GPa"] == 2.3
    assert sa.transitions[0]["onset_err_GPa"] == pytest.approx(math.hypot(0.5 / math.sqrt(3), 0.05))
    # Superlattice d at the lowest pressure that has one (p1, 1.5 GPa: 98.5 A)
    assert sa.superlattice == []
    assert sb.superlattice[0]["pressure_GPa"] == 1.5 and sb.superlattice[0]["d_A"] == 98.5


def test_campaign_file_round_trip(two_stores, tmp_path):
    spec = {"runs": ["run_a", "run_b"], "by": "size_nm", "values": [9, 6]}
    campaign = build_campaign("sizes", spec, two_stores)
    path = write_campaign(tmp_path / "campaigns" / "sizes.h5", campaign)
    back = read_campaign(path)
    assert (back.name, back.by, back.values, back.run_ids) == ("sizes", "size_nm", [9.0, 6.0], ["run_a", "run_b"])
    for kind in ("transitions", "phases", "superlattice"):
        want, got = campaign.table(kind), back.table(kind)
        for column in want:
            if want[column].dtype == object:
                assert list(got[column]) == list(want[column])
            else:
                np.testing.assert_array_equal(got[column], want[column])
    assert [r.store_sha256 for r in back.runs] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in two_stores]
    # text values (compression / release) stay text
    text = build_campaign("dirs", {**spec, "by": "direction", "values": ["up", "down"]}, two_stores)
    assert read_campaign(write_campaign(tmp_path / "dirs.h5", text)).values == ["up", "down"]
    with pytest.raises(InputError, match="not a dacpipe campaign file"):
        read_campaign(two_stores[0])


def test_campaign_command(two_stores, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"results_dir: {tmp_path}/results\nruns:\n  run_a: {{sheet: a.tsv}}\n  run_b: {{sheet: b.tsv}}\n"
                      "campaigns:\n  sizes: {runs: [run_a, run_b], by: size_nm, values: [9, 6]}\n")
    stores = [str(p) for p in two_stores]
    assert main(["campaign", "sizes", "--configfile", str(config), "--stores", *stores]) == 0
    assert read_campaign(tmp_path / "results" / "campaigns" / "sizes.h5").values == [9.0, 6.0]
    assert main(["campaign", "other", "--configfile", str(config)]) == 2
    assert "no campaign called 'other'; campaigns: sizes" in capsys.readouterr().err


@pytest.mark.slow  # matplotlib: ~2 s
def test_figures_refuse_a_store_changed_since(two_stores, tmp_path):
    from dacpipe.run.campaign_figures import CAMPAIGN_FIGURES, draw_campaign_figure

    spec = {"runs": ["run_a", "run_b"], "by": "size_nm", "values": [9, 6]}
    path = write_campaign(tmp_path / "c.h5", build_campaign("c", spec, two_stores))
    for name in CAMPAIGN_FIGURES:
        written = draw_campaign_figure(name, path, tmp_path / "fig" / f"{name}.png")
        assert all(p.stat().st_size > 1000 for p in written)
    # a journal column (config figures.width): the file is exactly 3.35 in wide at 600 dpi
    from matplotlib.image import imread

    column = draw_campaign_figure("campaign_transitions", path, tmp_path / "col" / "t.png", width="single-column")
    assert imread(column[0]).shape[1] == round(3.35 * 600)
    with h5py.File(two_stores[1], "a") as h5:
        h5["run_b/eos/X-lo/K0_GPa"][()] = 99.0
    with pytest.raises(InputError, match="run_b .* changed since the campaign was written"):
        draw_campaign_figure("campaign_compression", path, tmp_path / "fig" / "again.png")


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


def _config(campaigns):
    return {"runs": {"a": {"sheet": "a.tsv"}, "b": {"sheet": "b.tsv"}}, "campaigns": campaigns}


@pytest.mark.parametrize("campaign, message", [
    ({"runs": ["a", "c"], "by": "size_nm", "values": [1, 2]}, "campaigns.s.runs: no run 'c' in runs"),
    ({"runs": ["a", "b"], "by": "size_nm", "values": [1]}, "campaigns.s.values has 1 values for 2 runs"),
    ({"runs": ["a", "b"], "values": [1, 2]}, "campaigns.s: 'by' is a required property"),
    ({"runs": ["a", "b"], "by": "T", "values": [1, [2]]}, "campaigns.s.values.1 = [2] has the wrong type"),
    ({"runs": ["a", "b"], "by": "T", "values": [1, 2], "order": 1}, "campaigns.s: unknown key 'order'"),
    ({"runs": ["a", "a"], "by": "T", "values": [1, 2]}, "campaigns.s.runs"),
])
def test_bad_campaign_config_is_one_line_naming_the_key(campaign, message):
    with pytest.raises(ConfigError) as err:
        validate_config(_config({"s": campaign}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_campaign_config_and_default():
    config = validate_config(_config({"s": {"runs": ["b", "a"], "by": "direction", "values": ["up", "down"]}}))
    assert config["campaigns"]["s"]["values"] == ["up", "down"]
    assert validate_config({"runs": {"a": {"sheet": "a.tsv"}}})["campaigns"] == {}
    assert campaign_path({"results_dir": "res"}, "s") == Path("res/campaigns/s.h5")


def test_a_campaign_jobs_settings_are_its_own():
    """The campaign job's parameter (Snakemake reruns a job whose parameters
    change): the campaign and its runs' sheets only, so a new EOS model of a
    run, or any edit of a run outside the campaign, leaves it as it was (the
    run's new store reruns it instead)."""
    config = validate_config({"runs": {"a": {"sheet": "a.tsv"}, "b": {"sheet": "b.tsv"}, "c": {"sheet": "c.tsv"}},
                              "campaigns": {"s": {"runs": ["a", "b"], "by": "T", "values": [1, 2]}}})
    job = campaign_job_config(config, "s")
    assert job == {"results_dir": "results", "runs": {"a": {"sheet": "a.tsv"}, "b": {"sheet": "b.tsv"}},
                   "campaigns": {"s": {"runs": ["a", "b"], "by": "T", "values": [1, 2]}}}
    config["runs"]["a"]["eos"]["model"] = "vinet"
    config["runs"]["c"]["sheet"] = "elsewhere.tsv"
    assert campaign_job_config(config, "s") == job
    assert validate_config(job)["campaigns"]["s"]["runs"] == ["a", "b"]  # what the job's --config-json must pass


# --------------------------------------------------------------------------
# data-sample's campaign, by `dacpipe run`, against the synthetic truth
# --------------------------------------------------------------------------


def test_sample_campaign_against_truth(sample_results):
    """hgte_sizes (hgte_thz 9 nm, hgte_6nm 6 nm) from `dacpipe run --figures`."""
    results, _ = sample_results
    campaign = read_campaign(results / "campaigns" / "hgte_sizes.h5")
    assert (campaign.run_ids, campaign.values, campaign.by) == (["hgte_thz", "hgte_6nm"], [9.0, 6.0], "size_nm")
    tr = campaign.table("transitions")
    # zinc blende -> cinnabar of each run (truth: dacpipe.synth: 2.4-3.6 GPa at 9 nm, 3.1-4.3 GPa at 6 nm):
    # within 2 sigma of the bracket uncertainty
    for run, (onset, end) in (("hgte_thz", (2.4, 3.6)), ("hgte_6nm", (3.1, 4.3))):
        k = [i for i in range(len(tr["run"])) if tr["run"][i] == run and tr["from_phase"][i] == "HgTe-zb"][0]
        assert tr["direction"][k] == "up"
        assert abs(tr["onset_GPa"][k] - onset) < 2 * tr["onset_err_GPa"][k]
        assert abs(tr["end_GPa"][k] - end) < 2 * tr["end_err_GPa"][k]
    ph = campaign.table("phases")
    for run in ("hgte_thz", "hgte_6nm"):
        k = [i for i in range(len(ph["run"])) if ph["run"][i] == run and ph["phase"][i] == "HgTe-zb"][0]
        # library EOS of HgTe-zb, what the frames were made with: K0 42.1 GPa, V0 = 6.46^3 / 4
        assert abs(ph["K0_GPa"][k] - 42.1) < 2 * ph["K0_err_GPa"][k]
        assert abs(ph["V0_fu_A3"][k] - 6.46**3 / 4) < 3 * ph["V0_fu_err_A3"][k]
        # dEg/dP: the slope of the straight line through the true gaps at the fitted points
        # (Eg = 0.80 + 0.030 P - 0.0008 P^2, + 0.15 eV at 6 nm: the offset does not change it)
        with h5py.File(results / f"{run}.h5") as h5:
            fit = h5[f"{run}/optical/band_gap/fit/HgTe-zb"]
            points = set(fit["points"].asstr()[()])
            ids = h5[f"{run}/points/point"].asstr()[()]
        truth = read_truth(ROOT / "data-sample" / run / "truth.tsv")
        used = np.array([p in points for p in ids])
        slope = np.polyfit(truth["pressure_GPa"][used], truth["band_gap_eV"][used], 1)[0]
        assert abs(ph["dEg_dP_eV_per_GPa"][k] - slope) < 3 * ph["dEg_dP_err_eV_per_GPa"][k]
        assert 5.0 < ph["crystallite_nm"][k] < 10.0
    # the 6 nm run has no EOS of cinnabar (two points): NaN, not a number made up
    k = [i for i in range(len(ph["run"])) if ph["run"][i] == "hgte_6nm" and ph["phase"][i] == "HgTe-cinnabar"][0]
    assert math.isnan(ph["K0_GPa"][k]) and math.isnan(ph["dEg_dP_eV_per_GPa"][k])
    for name in ("campaign_compression", "campaign_transitions", "campaign_dEg_dP", "campaign_band_gap"):
        assert (results / "campaigns" / "hgte_sizes" / "figures" / f"{name}.png").stat().st_size > 5000


# --------------------------------------------------------------------------
# The workflow: editing one run reruns that run and the campaign, nothing else
# --------------------------------------------------------------------------

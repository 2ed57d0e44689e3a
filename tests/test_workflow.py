"""The Snakemake workflow on a fresh copy of the project, as a new user runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dacpipe.run.store import read_points

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """What a fresh clone holds that the workflow reads."""
    dest = tmp_path_factory.mktemp("clone")
    shutil.copy(ROOT / "Snakefile", dest)
    for folder in ("workflow", "config", "data-sample"):
        shutil.copytree(ROOT / folder, dest / folder)
    return dest


def snakemake(project, *args):
    # The rules call `dacpipe`, found on PATH as in an activated environment.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, env=env)


# hgte_thz's figures: one job draws them all. The campaign hgte_sizes (hgte_thz and hgte_6nm): rerun
# with either run, its file and its figures (one job).
HGTE_FIGURES = {"figures_hgte_thz": "1"}
CAMPAIGN_JOBS = {"campaign": "1", "campaign_figures": "1"}


def job_counts(out) -> dict[str, str]:
    """Rule -> number of jobs, from the table of `snakemake -n --quiet rules`."""
    return {line.split()[0]: line.split()[1] for line in (out.stdout + out.stderr).splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_dry_run_lists_one_job_per_run_and_stage(project):
    out = snakemake(project, "-n", "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    counts = job_counts(out)
    # Eight runs in the default config: hgte_thz (ruby + XRD + indexing + EOS),
    # nc_saxs (ruby + SAXS + superlattice), cdse_nc (gold marker pressure +
    # XRD + indexing + EOS, no ruby, no optics), hgte_6nm (as hgte_thz,
    # five points), au_radial (pressures typed in the sheet, XRD with its
    # cake + indexing + EOS), cspbi3_t (temperature series: ruby + optics,
    # no XRD), au_hot (heated series: the Sm:SrB4O7 pressure only) and
    # au_hot_marker (the same points' gold marker pressure + XRD), and the
    # campaign hgte_sizes. One job per run and stage, never one per spectrum
    # or frame; one for a run's figures. The identification's chunks (one
    # each here) are joined with the transitions.
    runs = ("hgte_thz", "nc_saxs", "cdse_nc", "hgte_6nm", "au_radial", "cspbi3_t", "au_hot", "au_hot_marker")
    assert counts == {"all": "1", "pressure": "8", "integrate": "6", "index": "4", "join_phases": "4", "eos": "4",
                      "superlattice": "1", "optical": "3", "store": "8", "merge": "14",
                      **{f"figures_{run}": "1" for run in runs}, **CAMPAIGN_JOBS, "total": "63"}


def test_full_run_then_noop_rerun(project):
    out = snakemake(project)
    assert out.returncode == 0, out.stderr[-3000:]
    for run in ("hgte_thz", "nc_saxs", "cdse_nc", "hgte_6nm", "au_radial", "cspbi3_t", "au_hot", "au_hot_marker"):
        points = read_points(project / "results" / f"{run}.h5", run)
        assert np.all(np.isfinite(points["pressure_GPa"]))
        # Only the metallic rock-salt points have something to say: no band gap; and nc_saxs's
        # p004, whose free 220 its lattice does not put there (tests/test_superlattice.py).
        noted = {"p004": "superlattice: peak 220 at"} if run == "nc_saxs" else {}
        assert all(s == "ok" or s.startswith("optical: ") or (p in noted and s.startswith(noted[p]))
                   for p, s in zip(points["point"], points["status"])), points["status"]
        assert all(points["status"][list(points["point"]).index(p)].startswith(n) for p, n in noted.items())
    assert (project / "results/hgte_thz/logs/pressure.log").exists()
    assert (project / "results/hgte_thz/logs/xrd.log").exists()
    again = snakemake(project, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    assert (project / "results/hgte_thz/figures/band_gap.pdf").stat().st_size > 5000


def test_report_holds_every_figure_with_its_caption(project):
    assert snakemake(project).returncode == 0
    out = snakemake(project, "--report", "report.html")
    assert out.returncode == 0, out.stderr[-2000:]
    html = (project / "report.html").read_text(errors="replace")
    for name in ("waterfall", "fractions", "compression", "f_f", "band_gap", "ruby_gallery", "saxs_distance",
                 "lattice", "spectra_stack", "saxs_stack", "ruby_scale", "hydrostaticity", "lattice_strain",
                 "campaign_compression", "campaign_transitions", "campaign_dEg_dP", "campaign_band_gap"):
        assert f"{name}.png" in html, name
    assert "Normalised stress F against Eulerian strain f" in html


def test_config_error_is_one_clear_line(project, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  hgte_thz:\n    pressure:\n      scale: mao1968\n")
    out = snakemake(project, "-n", "--configfile", str(bad))
    assert out.returncode != 0
    line = [l for l in (out.stdout + out.stderr).splitlines() if "mao1968" in l][0]
    assert "bad.yaml" in line and "runs.hgte_thz.pressure.scale = 'mao1968' is not allowed" in line


def test_lint_has_no_remark_but_software_deployment(project):
    # Per-rule conda environments come with the cluster profile (software
    # deployment on HPC); every other remark of --lint is a defect.
    out = snakemake(project, "--lint")
    remarks = [l.strip() for l in (out.stdout + out.stderr).splitlines() if l.strip().startswith("* ")]
    assert remarks and all("Specify a conda environment or container" in r for r in remarks), remarks


def test_editing_one_stage_reruns_only_that_stage(project, tmp_path):
    """Each job's parameters are its own stage's settings: a new rejection
    threshold for XRD reruns the XRD integration and the store, nothing else."""
    assert snakemake(project).returncode == 0
    extra = tmp_path / "extra.yaml"
    extra.write_text("runs:\n  hgte_thz:\n    xrd:\n      rejection:\n        threshold: 5.0\n")
    out = snakemake(project, "-n", "--quiet", "rules", "--configfile", "config/config.yaml", str(extra))
    assert out.returncode == 0, out.stderr
    jobs = job_counts(out)
    # Indexing, EOS and the optical stage (which takes each point's phase
    # from the indexing) read what follows from the XRD part.
    assert jobs == {"all": "1", "integrate": "1", "merge": "1", "index": "1", "join_phases": "1", "eos": "1",
                    "optical": "1", "store": "1", **HGTE_FIGURES, **CAMPAIGN_JOBS, "total": "11"}


def test_changing_only_the_eos_model_reruns_only_eos(project, tmp_path):
    """One job each: the run's EOS, what reads it and its figures, and its
    campaign with the campaign's figures; no job of another run."""
    assert snakemake(project).returncode == 0
    extra = tmp_path / "vinet.yaml"
    extra.write_text("runs:\n  hgte_thz:\n    eos:\n      model: vinet\n")
    out = snakemake(project, "-n", "--quiet", "rules", "--configfile", "config/config.yaml", str(extra))
    assert out.returncode == 0, out.stderr
    jobs = job_counts(out)
    # The optical stage reads each phase's EOS (deformation potentials).
    assert jobs == {"all": "1", "eos": "1", "optical": "1", "store": "1", **HGTE_FIGURES, **CAMPAIGN_JOBS,
                    "total": "7"}


def test_xrd_marker_gauge_reads_pressure_after_integration(project, tmp_path):
    """With gold as the gauge, the pressure job takes the XRD part: switching
    the gauge reruns pressure, indexing, EOS and the store, not the integration."""
    assert snakemake(project).returncode == 0
    extra = tmp_path / "marker.yaml"
    extra.write_text("runs:\n  hgte_thz:\n    pressure:\n      gauge: xrd-marker\n      marker: Au\n")
    out = snakemake(project, "-n", "--quiet", "rules", "--configfile", "config/config.yaml", str(extra))
    assert out.returncode == 0, out.stderr
    # Its figures job: it has other outputs (no ruby gallery: no ruby spectra to show any more).
    assert job_counts(out) == {"all": "1", "pressure": "1", "merge": "1", "index": "1", "join_phases": "1",
                               "eos": "1", "optical": "1", "store": "1", **HGTE_FIGURES, **CAMPAIGN_JOBS,
                               "total": "11"}


@pytest.mark.parametrize("extra", [
    {},
    {"pressure": {"gauge": "xrd-marker", "marker": "Au"}},
    {"phases": []},
    {"chunk_points": 100},
])
def test_a_job_sees_the_inputs_the_workflow_gave_it(extra):
    """A job gets only its stage's config sections (stage_json): from those
    alone it must derive the same inputs as the workflow did from the whole
    run, and the run must still validate."""
    from dacpipe.io.config import load_config, validate_config
    from dacpipe.run.config import run_config
    from dacpipe.run.stages import chunks, config_sections, needs, stages_for

    config = load_config([ROOT / "config" / "config.yaml"])
    config["runs"]["hgte_thz"].update(extra)
    run = run_config(validate_config(config), "hgte_thz")
    for stage in stages_for(run):
        own = {"sheet": run["sheet"], **{key: run[key] for key in config_sections(stage, run)}}
        job = run_config(validate_config({"runs": {"hgte_thz": own}}), "hgte_thz")
        assert needs(stage, job) == needs(stage, run), stage
        assert chunks(stage, job, 1234) == chunks(stage, run, 1234), stage


def test_ten_thousand_frames_are_a_few_dozen_jobs(tmp_path):
    """Chunks of run.chunk_points (500) frames and spectra: 20 integration
    jobs for 10,000 frames, and the DAG is built from one read of the sheet."""
    shutil.copy(ROOT / "Snakefile", tmp_path)
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    source = ROOT / "data-sample" / "hgte_thz"
    frames = sorted((source / "xrd").glob("*.cbf"))
    rows = ["point\txrd\tpressure_GPa"] + [f"p{i:05d}\t{frames[i % len(frames)]}\t{i * 1e-3:.3f}" for i in range(10_000)]
    (tmp_path / "points.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "config" / "config.yaml").write_text(
        "runs:\n  big:\n    sheet: points.tsv\n    pressure: {gauge: sheet}\n"
        f"    xrd: {{poni: {source / 'xrd.poni'}, mask: {source / 'xrd.mask'}, npt: 400}}\n")
    out = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert out.returncode == 0, out.stderr[-2000:]
    assert job_counts(out) == {"all": "1", "pressure": "20", "integrate": "20", "merge": "2", "store": "1",
                               "figures_big": "1", "total": "45"}


def test_the_light_jobs_start_without_scipy():
    """The merge, join, store and figures jobs read and write parts: their
    start (the CLI, the whole-series steps of the chunked stages, the store)
    imports no scipy, whose first import costs 0.1-0.3 s of each job on the
    workflow's critical path. The constants of dacpipe.core.units come from
    scipy.constants on first use, with scipy's values."""
    code = ("import sys; import dacpipe.cli.commands, dacpipe.run.store; "
            "from dacpipe.run.stages import FINISH, finish_function; "
            "[finish_function(stage) for stage in FINISH]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')); "
            "from dacpipe.core.units import BOLTZMANN_EV_PER_K, EV_PER_CM1, HC_EV_NM; "
            "from scipy import constants as c; "
            "print(HC_EV_NM == c.h * c.c / c.e * 1e9, EV_PER_CM1 == c.h * c.c / c.e * 100, "
            "BOLTZMANN_EV_PER_K == c.k / c.e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True True True"], out


def test_the_finished_workflow_cancels_only_the_schedulers_rate_limit_timers():
    """Snakemake's last rate-limit timer (a threading.Timer of the job rate's
    timespan, 1 s by default) kept the finished workflow's process alive; the
    workflow's end handlers cancel it, and no other timer."""
    import inspect
    import threading

    from snakemake.scheduling.job_scheduler import JobScheduler

    from dacpipe.run.workflow_hooks import SCHEDULER_TIMER_METHOD, cancel_rate_limit_timers

    # The Snakemake this runs on still makes those timers in the method the hook looks for.
    assert "threading.Timer(" in inspect.getsource(getattr(JobScheduler, SCHEDULER_TIMER_METHOD))

    class Scheduler:   # the shape of Snakemake's: a timer whose function the method defines
        def _schedule_reevalutation(self, delay):
            timer = threading.Timer(delay, lambda: None)
            timer.start()
            return timer

    scheduler_timer = getattr(Scheduler(), SCHEDULER_TIMER_METHOD)(60.0)
    other_timer = threading.Timer(60.0, print)
    other_timer.start()
    try:
        assert cancel_rate_limit_timers() == 1
        scheduler_timer.join(5.0)
        assert not scheduler_timer.is_alive()
        assert other_timer.is_alive() and not other_timer.finished.is_set()
    finally:
        other_timer.cancel()
        scheduler_timer.cancel()

"""Shared fixtures: where the real data lives, and skipping when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "real-data"
RUN = "hgte_thz"


def absolute_config(folder: Path, results: Path) -> Path:
    """The default config with its data-sample paths made absolute, so tests run from any folder."""
    text = (ROOT / "config" / "config.yaml").read_text().replace("data-sample/", f"{ROOT}/data-sample/")
    path = folder / "config.yaml"
    path.write_text(text.replace("results_dir: results", f"results_dir: {results}"))
    return path


def status_as_expected(truth, i, status: str) -> bool:
    """What a point of the intact data-sample says: "ok", except the metallic
    rock-salt points, whose spectra have no band gap and no PL to measure."""
    if np.isfinite(truth["band_gap_eV"][i]):
        return status == "ok"
    reasons = status.split("; ")
    return (len(reasons) == 2 and all(r.startswith("optical: ") for r in reasons)
            and "no absorption edge in the spectrum" in reasons[0] and "no emission peak above noise" in reasons[1])


# What puts a test in the full suite only: whole-pipeline fixtures (data-sample
# through every stage, tens of seconds on two cores) and Snakemake runs.
SLOW_FIXTURES = {"sample_results", "project", "marker_run", "cluster",
                 "hgte"}   # test_peaks: data-sample's hgte_thz integrated again


def pytest_collection_modifyitems(config, items):
    """The fast lane (``-m "not slow"``, under a minute) leaves out what runs the
    whole pipeline: tests marked ``workflow`` and tests using :data:`SLOW_FIXTURES`."""
    for item in items:
        if item.get_closest_marker("workflow") or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/real-data``; tests that use it skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent (it lives beside the project, not in it)")
    return REAL_DATA


def stage_context(stage: str, sheet, run: dict, upstream=None, warn=None, progress=None, run_id: str = "test"):
    """A :class:`~dacpipe.core.results.StageContext` for calling a stage function directly."""
    from dacpipe.core.results import StageContext, Upstream

    upstream = {k: v if isinstance(v, Upstream) else Upstream(*v) if isinstance(v, tuple) else Upstream(v)
                for k, v in (upstream or {}).items()}
    return StageContext(run_id=run_id, stage=stage, sheet=sheet, run=run, upstream=upstream,
                        warn=warn or (lambda message: None), progress=progress or (lambda done, total: None))


@pytest.fixture(scope="session")
def sample_results(tmp_path_factory):
    """Every data-sample run processed with the default config by `dacpipe run
    --figures`, once per test session: (results folder, config file)."""
    from dacpipe.cli import main

    folder = tmp_path_factory.mktemp("sample")
    config = absolute_config(folder, folder / "results")
    assert main(["run", "--configfile", str(config), "--figures"]) == 0
    return folder / "results", config

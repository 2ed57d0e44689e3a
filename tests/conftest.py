"""Shared fixtures: where the real data lives, and skipping when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "real-data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/real-data``; tests that use it skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent (it lives beside the project, not in it)")
    return REAL_DATA


@pytest.fixture(scope="session")
def sample_results(tmp_path_factory):
    """Every data-sample run processed with the default config by `dacpipe run
    --figures`, once per test session: (results folder, config file)."""
    from dacpipe.cli import main

    folder = tmp_path_factory.mktemp("sample")
    text = (ROOT / "config" / "config.yaml").read_text().replace("data-sample/", f"{ROOT}/data-sample/")
    config = folder / "config.yaml"
    config.write_text(text.replace("results_dir: results", f"results_dir: {folder / 'results'}"))
    assert main(["run", "--configfile", str(config), "--figures"]) == 0
    return folder / "results", config

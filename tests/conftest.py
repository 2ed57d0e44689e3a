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

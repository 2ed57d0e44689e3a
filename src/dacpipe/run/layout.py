"""Where a run's files go under ``results_dir``."""

from __future__ import annotations

from pathlib import Path


def store_path(config: dict, run_id: str) -> Path:
    """The run's result store, ``<results>/<run>.h5``."""
    return Path(config["results_dir"]) / f"{run_id}.h5"


def part_path(config: dict, run_id: str, stage: str) -> Path:
    """One stage's part, ``<results>/<run>/parts/<stage>.h5``."""
    return Path(config["results_dir"]) / run_id / "parts" / f"{stage}.h5"


def chunk_path(config: dict, run_id: str, stage: str, chunk: int) -> Path:
    """One chunk of a per-point stage, ``<results>/<run>/parts/<stage>/chunkNNNN.h5``."""
    return Path(config["results_dir"]) / run_id / "parts" / stage / f"chunk{chunk:04d}.h5"


def figure_path(config: dict, run_id: str, name: str) -> Path:
    """Where a run's figure goes (PNG; the PDF beside it)."""
    return Path(config["results_dir"]) / run_id / "figures" / f"{name}.png"

"""Synthetic runs from known truth: the generator of ``data-sample/``.

Each run is written by the module of its kind (``ruby``: gauge spectra; more
kinds join as the pipeline grows) with the truth beside the data. Everything
is drawn from one seeded ``numpy.random.Generator`` in a fixed order, so
``dacpipe synth`` rewrites ``data-sample/`` byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ruby import write_hgte_run

SEED = 20261123


def write_data_sample(root: str | Path, seed: int = SEED) -> Path:
    """Write every synthetic run of ``data-sample/`` under ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    write_hgte_run(root / "hgte_thz", rng)
    return root


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """A truth.tsv as columns (``point`` as str, the others as float, empty = NaN)."""
    lines = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    out = {}
    for j, name in enumerate(header):
        values = [r[j] if j < len(r) else "" for r in rows]
        out[name] = np.array(values) if name == "point" else np.array([float(v) if v else np.nan for v in values])
    return out

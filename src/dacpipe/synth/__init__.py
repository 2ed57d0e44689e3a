"""Synthetic runs from known truth: the generator of ``data-sample/``.

Runs are composed in :mod:`.runs` from the parts that make their data:
:mod:`.ruby` (gauge spectra), :mod:`.xrd` (powder diffraction frames of the
HgTe series), :mod:`.saxs` (superlattice SAXS frames) and :mod:`.detector`
(geometry files, masks and deterministic image writers). The truth is
written beside the data (``truth.tsv``, ``truth_spots.tsv``).

Randomness: the ``hgte_thz`` ruby spectra draw from
``numpy.random.default_rng(seed)`` exactly as before the run had images;
every image (and the SAXS ruby series and detector) has its own stream,
``default_rng([seed, run, frame])``, so a change to one part does not
reshuffle the others. Everything is drawn in a fixed order, so ``dacpipe
synth`` rewrites ``data-sample/`` byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runs import (
    write_au_hot,
    write_au_radial,
    write_cdse_nc,
    write_cspbi3_t,
    write_hgte_6nm,
    write_hgte_thz,
    write_nc_saxs,
)

SEED = 20261123


def write_data_sample(root: str | Path, seed: int = SEED) -> Path:
    """Write every synthetic run of ``data-sample/`` under ``root``."""
    root = Path(root)
    write_hgte_thz(root / "hgte_thz", seed)
    write_nc_saxs(root / "nc_saxs", seed)
    write_cdse_nc(root / "cdse_nc", seed)
    write_hgte_6nm(root / "hgte_6nm", seed)
    write_au_radial(root / "au_radial", seed)
    write_cspbi3_t(root / "cspbi3_t", seed)
    write_au_hot(root / "au_hot", seed)
    return root


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """A truth.tsv as columns: numbers as float (empty = NaN), text columns
    (``point``, ``optical_phase``) as str."""
    lines = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    out = {}
    for j, name in enumerate(header):
        values = [r[j] if j < len(r) else "" for r in rows]
        try:
            if name == "point":
                raise ValueError("point ids are names, even when they look like numbers")
            out[name] = np.array([float(v) if v else np.nan for v in values])
        except ValueError:
            out[name] = np.array(values)
    return out

"""What a stage is given and what it gives back: the one signature of every stage.

Each domain package (``pressure``, ``integration``, ``xrd``, ``eos``,
``optical``, ``saxs``) has a ``stage.py`` whose stage functions take a
:class:`StageContext` and return a :class:`StageResult`. The runner
(:mod:`dacpipe.run.runner`) builds the context (the sheet, the run's
validated settings, the arrays of the stages this one reads) and writes the
result to a part file; stages never touch HDF5 or the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True, eq=False)
class Upstream:
    """What an earlier stage produced, as arrays: its datasets by name and its attributes."""

    datasets: Mapping[str, np.ndarray]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.datasets[name]


@dataclass(frozen=True, eq=False)
class StageContext:
    """Everything a stage function may use.

    Attributes
    ----------
    run_id : str
        The run's name in the config; every message a stage prints starts with it.
    stage : str
        The stage being run (``"xrd"`` or ``"saxs"`` tell the integration which images to read).
    sheet : dacpipe.io.sheet.Sheet
        The run's sample sheet (possibly a chunk of its points).
    run : dict
        The run's validated settings, schema defaults filled in.
    upstream : mapping of str to Upstream
        The arrays of the stages this one reads, by stage name.
    warn : callable
        Takes one line; the runner sends it to the console and the job's log.
    progress : callable
        Called with (points done, points in all).
    """

    run_id: str
    stage: str
    sheet: Any
    run: dict
    upstream: Mapping[str, Upstream] = field(default_factory=dict)
    warn: Callable[[str], None] = lambda message: None
    progress: Callable[[int, int], None] = lambda done, total: None

    def warn_point(self, point: str, message: str) -> None:
        """One line about one point: ``<run>/<point>: <message>``."""
        self.warn(f"{self.run_id}/{point}: {message}")


@dataclass
class StageResult:
    """What one stage produced for a run: arrays over the N points, in sheet order.

    ``datasets`` keys may contain ``/`` for subgroups (``"before/R1_nm"``);
    ``axes`` are arrays not over points (a pattern's q axis); ``extra`` are
    arrays in other groups of the entry, keyed by their path there
    (``"transitions/onset_GPa"``); ``status`` is ``"ok"`` or the reasons
    something was skipped, per point; ``inputs`` are the files read, as
    paths or as :class:`dacpipe.io.refs.FileRecord` already checksummed.
    NeXus attributes (``NX_class``, ``signal``, ``axes``) are the store's
    business, not the stage's.
    """

    stage: str
    point_ids: Sequence[str]
    datasets: dict[str, np.ndarray] = field(default_factory=dict)
    axes: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    status: list[str] = field(default_factory=list)
    inputs: list = field(default_factory=list)

"""What a result was made from: the software versions, and the digest of the
settings each stage's part was computed with (the inputs' checksums are
:mod:`dacpipe.io.refs`)."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib.metadata import PackageNotFoundError, version

from .stages import config_sections

PACKAGES = ("dacpipe", "numpy", "scipy", "pyFAI", "fabio", "lmfit", "h5py", "snakemake")

# The attribute of a part's stage group that holds :func:`settings_digest`.
SETTINGS_ATTR = "settings_sha256"


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def settings_digest(run: dict, stage: str) -> str:
    """SHA-256 of the config sections of ``run`` that ``stage`` reads
    (:func:`~dacpipe.run.stages.config_sections`, its Snakemake job's
    parameters), as canonical JSON.

    Each part records the digest of the settings it was computed with; the
    store's assembly compares it with the digest of the config it writes
    as provenance, so that a store never holds numbers of one config under
    the provenance of another. The same whether the run's config came from
    YAML (``dacpipe run``) or from a job's ``--config-json``: JSON keeps
    numbers, strings and lists as they were.
    """
    sections = {key: run.get(key) for key in config_sections(stage, run)}
    text = json.dumps(sections, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

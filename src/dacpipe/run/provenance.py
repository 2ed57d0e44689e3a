"""What a result was made from: the software versions (the inputs' checksums are :mod:`dacpipe.io.refs`)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("dacpipe", "numpy", "scipy", "pyFAI", "fabio", "lmfit", "h5py", "snakemake")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out

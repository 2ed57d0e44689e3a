"""What a result was made from: input checksums and software versions."""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable

from .sheet import file_part

PACKAGES = ("dacpipe", "numpy", "scipy", "pyFAI", "fabio", "lmfit", "h5py", "snakemake")


@dataclass(frozen=True)
class FileRecord:
    path: str
    sha256: str  # "" when the file could not be read (its point says why)
    size: int    # bytes; -1 when missing


def file_record(reference: str | Path) -> FileRecord:
    """Checksum of the file behind a sheet reference (HDF5 suffixes stripped)."""
    path = Path(file_part(str(reference)))
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return FileRecord(str(path), digest.hexdigest(), path.stat().st_size)
    except OSError:
        return FileRecord(str(path), "", -1)


def file_records(references: Iterable[str | Path | FileRecord]) -> list[FileRecord]:
    """One record per file, in first-seen order; records already made are kept."""
    seen: dict[str, FileRecord] = {}
    for ref in references:
        path = ref.path if isinstance(ref, FileRecord) else file_part(str(ref))
        if path not in seen:
            seen[path] = ref if isinstance(ref, FileRecord) else file_record(path)
    return list(seen.values())


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out

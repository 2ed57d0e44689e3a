"""File references, the one place that reads ``file.h5::/path@N``, and file checksums.

A sheet cell, a config value or a command-line argument names an input as a
*reference*:

``"frame.tif"``
    A plain file; a multi-frame file needs ``"frame.edf@2"``.
``"scan.h5::/entry/data/data@7"``
    Frame 7 (0-based) of an HDF5 dataset.
``"scan.h5"`` or ``"scan.nxs@3"``
    HDF5 without a dataset path (the reader finds the image).

:func:`parse_reference` is the only parser of that syntax; everything that
needs the file behind a reference (provenance, the watcher, the workflow's
input lists) asks :func:`file_part`, and relative references are made
absolute by :func:`resolve`. :func:`file_record` checksums what a reference
points at, for the store's provenance.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..core.errors import InputError

_FRAME_SUFFIX = re.compile(r"^(?P<body>.*)@(?P<frame>-?\d+)$", re.S)


@dataclass(frozen=True)
class FileRef:
    """One file, and optionally one dataset and one frame inside it.

    Attributes
    ----------
    path : Path
        The file.
    dataset : str or None
        Absolute HDF5 path of the dataset (``"/entry/data/data"``), or None for
        plain files and for HDF5 files whose dataset is to be found.
    frame : int or None
        0-based frame index, or None when none was given.
    """

    path: Path
    dataset: str | None = None
    frame: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.dataset is not None:
            text += f"::{self.dataset}"
        if self.frame is not None:
            text += f"@{self.frame}"
        return text


def parse_reference(reference: str | os.PathLike | FileRef) -> FileRef:
    """Split ``"file.h5::/entry/data@7"`` into file, dataset and frame.

    Parameters
    ----------
    reference : str, Path or FileRef
        ``"file"``, ``"file@N"``, ``"file::/dataset"`` or
        ``"file::/dataset@N"``. A trailing ``@`` followed by digits is always
        read as a frame index; an HDF5 path without a leading ``/`` gets one.
        A :class:`~pathlib.Path` is a file name and is never parsed.

    Returns
    -------
    FileRef

    Raises
    ------
    InputError
        Empty reference, empty file or dataset part, negative frame.
    """
    if isinstance(reference, FileRef):
        return reference
    if isinstance(reference, os.PathLike):
        return FileRef(Path(reference))
    text = str(reference)
    if not text.strip():
        raise InputError("empty file reference")
    frame = None
    match = _FRAME_SUFFIX.match(text)
    if match:
        text, frame = match["body"], int(match["frame"])
        if frame < 0:
            raise InputError(f"frame index {frame} is negative (frames count from 0)", reference)
    head, sep, dataset = text.partition("::")
    if not head:
        raise InputError("file reference has no file name", reference)
    if sep:
        dataset = dataset.strip()
        if not dataset.strip("/"):
            raise InputError("nothing after '::'; give the HDF5 dataset path, e.g. file.h5::/entry/data", reference)
        if not dataset.startswith("/"):
            dataset = "/" + dataset
        return FileRef(Path(head), dataset, frame)
    return FileRef(Path(head), None, frame)


def file_part(reference: str | os.PathLike | FileRef) -> str:
    """The file a reference names, without its ``::/dataset`` and ``@N`` parts.

    Never raises: a reference the parser refuses gives the text before
    ``::``, so that a listing of inputs goes on and the reader reports the
    problem with the point.
    """
    try:
        return str(parse_reference(reference).path)
    except InputError:
        return str(reference).split("::", 1)[0]


def resolve(folder: str | os.PathLike, reference: str, *, absolute: bool = False) -> str:
    """``reference`` with a relative file part taken relative to ``folder``
    (its dataset and frame suffix kept as written); ``absolute`` also
    normalises the result to an absolute path."""
    head, sep, tail = str(reference).partition("::")
    if not sep:  # "file@N": the frame suffix is not part of the file name
        match = _FRAME_SUFFIX.match(head)
        if match:
            head, sep, tail = match["body"], "@", match["frame"]
    path = Path(head).expanduser()
    if not path.is_absolute():
        path = Path(folder) / path
    text = os.path.abspath(path) if absolute else str(path)
    return text + (sep + tail if sep else "")


# --- checksums, for provenance ---------------------------------------------

@dataclass(frozen=True)
class FileRecord:
    """A file read, as the store's provenance lists it."""

    path: str
    sha256: str  # "" when the file could not be read (its point says why)
    size: int    # bytes; -1 when missing


def file_record(reference: str | os.PathLike | FileRef, content: bytes | None = None) -> FileRecord:
    """SHA-256 and size of the file behind a reference.

    ``content``, the file's bytes when the caller has already read them
    (a CBF frame is checked and decoded from memory), saves reading the file
    a second time.
    """
    path = Path(file_part(reference))
    if content is not None:
        return FileRecord(str(path), hashlib.sha256(content).hexdigest(), len(content))
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return FileRecord(str(path), digest.hexdigest(), path.stat().st_size)
    except OSError:
        return FileRecord(str(path), "", -1)


def file_records(references: Iterable[str | os.PathLike | FileRecord]) -> list[FileRecord]:
    """One record per file, in first-seen order; records already made are kept."""
    seen: dict[str, FileRecord] = {}
    for ref in references:
        path = ref.path if isinstance(ref, FileRecord) else file_part(ref)
        if path not in seen:
            seen[path] = ref if isinstance(ref, FileRecord) else file_record(path)
    return list(seen.values())

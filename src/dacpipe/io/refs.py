"""File references, the one place that reads ``file.h5::/path@N``, and file checksums.

A sheet cell, a config value or a command-line argument names an input as a
*reference*:

``"frame.tif"``
    A plain file; a multi-frame file needs ``"frame.edf@2"``.
``"scan.h5::/entry/data/data@7"``
    Frame 7 (0-based) of an HDF5 dataset.
``"scan.h5::/entry/data/data@0:10"``
    Frames 0 to 9 (Python's half-open range: the stop is not included),
    summed into one image (:func:`dacpipe.io.images.read_image`; the
    integration stage's ``frames: mean`` divides by their number).
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

_FRAME_SUFFIX = re.compile(r"^(?P<body>.*)@(?P<frame>-?\d+)(?::(?P<stop>-?\d+))?$", re.S)


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
        0-based frame index (the first of a range), or None when none was given.
    stop : int or None
        For a range of frames (``@0:10``), the index after the last one;
        None for a single frame.
    """

    path: Path
    dataset: str | None = None
    frame: int | None = None
    stop: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.dataset is not None:
            text += f"::{self.dataset}"
        if self.frame is not None:
            text += f"@{self.frame}"
        if self.stop is not None:
            text += f":{self.stop}"
        return text

    @property
    def frames(self) -> range | None:
        """The frames named: ``range(frame, stop)`` for a range, a one-frame
        range for ``@N``, None when no frame was given."""
        if self.frame is None:
            return None
        return range(self.frame, self.frame + 1 if self.stop is None else self.stop)

    @property
    def n_frames(self) -> int:
        """How many frames the reference sums (1 without a range)."""
        frames = self.frames
        return 1 if frames is None else len(frames)

    def single(self, frame: int) -> "FileRef":
        """The same file and dataset, frame ``frame`` alone."""
        return FileRef(self.path, self.dataset, frame)


def parse_reference(reference: str | os.PathLike | FileRef) -> FileRef:
    """Split ``"file.h5::/entry/data@7"`` into file, dataset and frame.

    Parameters
    ----------
    reference : str, Path or FileRef
        ``"file"``, ``"file@N"``, ``"file::/dataset"`` or
        ``"file::/dataset@N"``, or a range ``@first:stop`` (half-open, as in
        Python: ``@0:10`` is frames 0 to 9). A trailing ``@`` followed by
        digits is always read as a frame index; an HDF5 path without a
        leading ``/`` gets one.
        A :class:`~pathlib.Path` is a file name and is never parsed.

    Returns
    -------
    FileRef

    Raises
    ------
    InputError
        Empty reference, empty file or dataset part, negative frame, a range
        whose stop is not after its first frame.
    """
    if isinstance(reference, FileRef):
        return reference
    if isinstance(reference, os.PathLike):
        return FileRef(Path(reference))
    text = str(reference)
    if not text.strip():
        raise InputError("empty file reference")
    frame = stop = None
    match = _FRAME_SUFFIX.match(text)
    if match:
        text, frame = match["body"], int(match["frame"])
        if frame < 0:
            raise InputError(f"frame index {frame} is negative (frames count from 0)", reference)
        if match["stop"] is not None:
            stop = int(match["stop"])
            if stop <= frame:
                raise InputError(f"frame range {frame}:{stop} is empty (the stop is not included: "
                                 f"@{frame}:{frame + 1} is frame {frame} alone)", reference)
    head, sep, dataset = text.partition("::")
    if not head:
        raise InputError("file reference has no file name", reference)
    if sep:
        dataset = dataset.strip()
        if not dataset.strip("/"):
            raise InputError("nothing after '::'; give the HDF5 dataset path, e.g. file.h5::/entry/data", reference)
        if not dataset.startswith("/"):
            dataset = "/" + dataset
        return FileRef(Path(head), dataset, frame, stop)
    return FileRef(Path(head), None, frame, stop)


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
            head, sep = match["body"], "@"
            tail = match["frame"] + (f":{match['stop']}" if match["stop"] is not None else "")
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

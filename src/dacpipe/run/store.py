"""The HDF5 result store, one file per run (contract section 3).

Each stage of the workflow writes a *part* (``<results>/<run>/parts/<stage>.h5``)
holding its own group laid out as in the final store, its per-point status
and the inputs it read. :func:`assemble` merges the parts into
``<results>/<run>.h5`` with the ``points`` table and the provenance. Parts let
Snakemake rerun one stage without touching the others; every write is atomic
(a temporary file in the same folder, then ``os.replace``), so a reader never
sees a half-written file and a killed run leaves the previous file or none.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from ..core.errors import DacpipeError
from ..core.results import StageResult
from ..core.units import units_from_name
from ..io.refs import FileRecord, file_records
from ..io.sheet import Sheet
from .provenance import SETTINGS_ATTR, versions

STRING = h5py.string_dtype()

# NeXus attributes of the groups that are NXdata (silx and h5web plot them
# without help); written here only, never by a stage.
_PATTERN_NXDATA = {"NX_class": "NXdata", "signal": "I", "axes": [".", "q"], "q_indices": 1, "two_theta_indices": 1}
NEXUS = {"xrd": _PATTERN_NXDATA, "saxs": _PATTERN_NXDATA}


class StoreError(DacpipeError):
    """A store or part that cannot be written (disk full) or read (damaged):
    one line naming the file, the cause and what to do."""


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``,
    Linux 4.7+); elsewhere set and put back at once, which another thread
    creating a file in between could see."""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Open a new HDF5 file that appears at ``path`` only once fully written.

    The file is built in memory (HDF5's core driver) and written out by
    Python: HDF5 itself never writes to the disk, because a write that
    fails inside HDF5 (a full disk) leaves the library unable to close the
    file, and the process then dies of a segmentation fault on exit (seen
    with HDF5 2.0 on a full tmpfs). Python's own write raises a plain
    ``OSError``, turned into one :class:`StoreError` line; the previous file
    at ``path`` is untouched. Temporaries left by a writer killed before its
    rename (kill -9) are removed first (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write it: {os_reason(exc)}") from None
    # mkstemp makes the file 0600 whatever the umask: give it the mode any
    # new file gets (0644 under umask 022, 0664 under 002), as the figures
    # beside it have, so that the beamline group can read the results.
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError:  # a file system without modes: as mkstemp made it
        pass
    os.close(fd)
    try:
        with h5py.File(tmp, "w", driver="core", backing_store=False) as h5:
            yield h5
            h5.flush()
            image = h5.id.get_file_image()
        try:
            with open(tmp, "wb") as fh:
                fh.write(image)
        except OSError as exc:
            raise StoreError(f"{path}: cannot write it: {os_reason(exc)} "
                             f"({'the previous file is kept' if path.exists() else 'nothing written'})") from None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# A temporary's name says which process on which machine writes it:
# .<target>.<host>.<pid>.<random>.tmp
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[^.]*)\.(?P<pid>\d+)\.[^.]+\.tmp$")
# A temporary of another machine (a cluster's shared folder), or of an
# older naming, whose writer cannot be asked, is stale once this old: no
# store takes a day to write.
STALE_TEMPORARY_AGE_S = 24 * 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{_host()}.{os.getpid()}."


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` whose writer is gone.

    A writer killed between creating its temporary and renaming it
    (``kill -9`` of the process group) leaves ``.<name>.<host>.<pid>.*.tmp``,
    as large as the store it was writing. One of this machine whose process
    no longer exists is removed; one of another machine, or named before the
    writer's process was part of the name, only when older than
    :data:`STALE_TEMPORARY_AGE_S`. A live writer's temporary is never touched.

    Returns
    -------
    list of Path
        The temporaries removed.
    """
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    host, now = _host(), time.time()
    for candidate in candidates:
        match = _TEMPORARY.match(candidate.name)
        if match and match["target"] != path.name:
            continue  # the temporary of another file whose name starts like this one's
        try:
            if match and match["host"] == host:
                stale = not _process_exists(int(match["pid"]))
            else:
                stale = now - candidate.stat().st_mtime > STALE_TEMPORARY_AGE_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def os_reason(exc: OSError) -> str:
    """An OSError as a few words: "no space left on device", "permission denied"."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower() if exc.errno != errno.ENOSPC else "no space left on device"
    return " ".join(str(exc).split()).lower()


def open_result(path: str | Path, run_id: str | None = None) -> h5py.File:
    """Open a store or part for reading; one :class:`StoreError` line, saying
    how to rebuild it, when it is missing or not a whole HDF5 file (damaged,
    overwritten, cut short) or holds no entry ``run_id``."""
    path = Path(path)
    kind = "part" if path.parent.name == "parts" or path.parent.parent.name == "parts" else "store"
    rebuild = (f"delete it and run again to rebuild it (`dacpipe run`, or Snakemake, which then reruns "
               f"the job that writes it)")
    try:
        h5 = h5py.File(path, "r")
    except FileNotFoundError:
        raise StoreError(f"{path}: {kind} not found; run the stages that write it first") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable {kind}, not a whole HDF5 file "
                         f"({_h5_reason(exc)}); {rebuild}") from None
    if run_id is not None and run_id not in h5:
        names = list(h5)
        h5.close()
        raise StoreError(f"{path}: the {kind} holds no run {run_id!r} (it has {', '.join(names[:3]) or 'nothing'}); "
                         f"{rebuild}")
    return h5


def _h5_reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"\s*\(.*", "", text)  # h5py's details after the first parenthesis: file names, offsets
    return text[:120] or type(exc).__name__


def write_dataset(group: h5py.Group, name: str, values) -> h5py.Dataset:
    """A dataset with ``@units`` from its name; strings as UTF-8."""
    array = np.asarray(values)
    if array.dtype.kind in "UOS":
        dset = group.create_dataset(name, data=np.asarray(array, dtype=object).astype(str).tolist(), dtype=STRING)
    else:
        dset = group.create_dataset(name, data=array)
    unit = units_from_name(name.rsplit("/", 1)[-1])
    if unit:
        dset.attrs["units"] = unit
    return dset


def set_attrs(obj, attrs: dict) -> None:
    """Attributes, with lists of strings (NeXus ``@axes``) stored as UTF-8 string arrays."""
    for key, value in attrs.items():
        if value is None:
            value = ""
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = np.array(value, dtype=STRING)
        obj.attrs[key] = value


def write_part(path: str | Path, run_id: str, result: StageResult) -> None:
    """Write one stage's result as a part file."""
    n = len(result.point_ids)
    if len(result.status) != n:
        raise ValueError(f"{result.stage}: {len(result.status)} statuses for {n} points")
    with atomic_h5(path) as h5:
        entry = h5.create_group(run_id)
        write_dataset(entry, "point_ids", list(result.point_ids))
        group = entry.create_group(result.stage)
        set_attrs(group, {**NEXUS.get(result.stage, {}), **result.attrs})
        for name, values in result.datasets.items():
            if np.shape(values)[:1] != (n,):
                raise ValueError(f"{result.stage}/{name}: shape {np.shape(values)} is not over {n} points")
            write_dataset(group, name, values)
        for name, values in result.axes.items():
            write_dataset(group, name, values)
        if result.axes:
            # Which datasets are not over points, for merging chunks: an axis
            # may happen to be as long as a chunk.
            set_attrs(group, {"fixed_axes": sorted(result.axes)})  # sorted: as a part read back lists them
        for path, values in result.extra.items():
            write_dataset(entry, path, values)
        write_dataset(group, "status", result.status)
        write_inputs(entry.create_group("inputs"), result.inputs)
        # Which stage wrote the part and which of its members are extras (some
        # lie inside the stage's own group, as the optical E(P) fits do), so
        # that read_result can give the StageResult back.
        set_attrs(entry, {"stage": result.stage, "extras": list(result.extra)})


def merge_chunks(paths: Sequence[str | Path], out: str | Path, run_id: str) -> None:
    """Join the parts of one stage computed on consecutive chunks of points
    into the part of the whole run, as if it had been computed in one job.

    Arrays over points are concatenated (a second dimension that differs
    between chunks, such as the longest fitted window, is NaN-padded to the
    widest); the axes named in ``@fixed_axes`` and the attributes come from
    the first chunk. What a chunk found about its own stretch of the series
    only (the phase transitions: groups beside the stage's) is left out: the
    stage's whole-series step computes it on the joined series
    (:func:`dacpipe.run.runner.merge_stage`).
    """
    sources = []
    try:
        for p in paths:
            sources.append(open_result(p, run_id))
    except StoreError:
        for src in sources:
            src.close()
        raise
    try:
        entries = [src[run_id] for src in sources]
        point_ids = [s for e in entries for s in e["point_ids"].asstr()[()]]
        stage = entries[0].attrs.get("stage")
        if stage is None:  # a part written before parts named their stage: its one group
            (stage,) = [name for name in entries[0] if name not in ("point_ids", "inputs")]
        stage = _attr_value(stage)
        # Chunks computed with other settings (one left by another config) are not one result.
        digests = [_attr_value(e[stage].attrs.get(SETTINGS_ATTR, "")) for e in entries]
        odd = next((k for k, d in enumerate(digests) if d and digests[0] and d != digests[0]), None)
        if odd is not None:
            raise StoreError(f"{out}: chunks {paths[0]} and {paths[odd]} were computed with different settings "
                             f"of {stage} (a chunk left by another config); rerun the stage's chunks")
        with atomic_h5(out) as h5:
            entry = h5.create_group(run_id)
            write_dataset(entry, "point_ids", point_ids)
            counts = [len(e["point_ids"]) for e in entries]
            _merge_group([e[stage] for e in entries], entry.create_group(stage), counts)
            records = [FileRecord(p, h, int(n)) for e in entries for p, h, n in
                       zip(e["inputs/path"].asstr()[()], e["inputs/sha256"].asstr()[()], e["inputs/size"][()])]
            write_inputs(entry.create_group("inputs"), records)
            set_attrs(entry, {"stage": stage, "extras": []})
    finally:
        for src in sources:
            src.close()


class SpliceError(ValueError):
    """Two parts of one stage that cannot be spliced row by row: their axes or
    attributes differ (other settings, another detector geometry). The caller
    recomputes the stage on all points."""


def read_result(path: str | Path, run_id: str) -> StageResult:
    """The :class:`StageResult` a part file holds: :func:`write_part` read back.

    Strings come back as object arrays of ``str``, inputs as
    :class:`~dacpipe.io.refs.FileRecord`. In a part written before parts
    named their extras, the members of the stage's group that are not one row
    per point count as extras.
    """
    with open_result(path, run_id) as h5:
        entry = h5[run_id]
        point_ids = [str(p) for p in entry["point_ids"].asstr()[()]]
        n = len(point_ids)
        stage = entry.attrs.get("stage")
        if stage is None:  # a part without the attribute: its group with a status
            (stage,) = [name for name in entry if isinstance(entry[name], h5py.Group) and "status" in entry[name]]
        stage = str(stage)
        named = entry.attrs.get("extras")
        extras = None if named is None else set(_attr_value(named))
        group = entry[stage]
        fixed = set(_attr_value(group.attrs.get("fixed_axes", [])))
        result = StageResult(stage=stage, point_ids=point_ids,
                             attrs={k: _attr_value(v) for k, v in group.attrs.items() if k != "fixed_axes"},
                             status=[str(s) for s in group["status"].asstr()[()]])
        for name, dset in _datasets(group):
            if name == "status":
                continue
            value = _read_dataset(dset)
            if (extras is not None and f"{stage}/{name}" in extras) or \
                    (extras is None and name not in fixed and np.shape(value)[:1] != (n,)):
                result.extra[f"{stage}/{name}"] = value
            elif name in fixed:
                result.axes[name] = value
            else:
                result.datasets[name] = value
        for name in entry:
            if name not in (stage, "point_ids", "inputs"):
                member = entry[name]
                items = _datasets(member) if isinstance(member, h5py.Group) else [("", member)]
                for sub, dset in items:
                    result.extra[f"{name}/{sub}" if sub else name] = _read_dataset(dset)
        table = entry["inputs"]
        result.inputs = [FileRecord(p, h, int(size)) for p, h, size in
                         zip(table["path"].asstr()[()], table["sha256"].asstr()[()], table["size"][()])]
    return result


def _datasets(group: h5py.Group, prefix: str = "") -> list[tuple[str, h5py.Dataset]]:
    """Every dataset under ``group``, by its path relative to it."""
    out = []
    for name, member in group.items():
        if isinstance(member, h5py.Group):
            out += _datasets(member, f"{prefix}{name}/")
        else:
            out.append((prefix + name, member))
    return out


def _read_dataset(dset: h5py.Dataset):
    return dset.asstr()[()] if dset.dtype.kind == "O" else dset[()]


def _attr_value(value):
    """An HDF5 attribute as written by :func:`set_attrs`: string arrays as lists of ``str``."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist()]
    return value


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN, for attributes and axes."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(np.ravel(a)) == list(np.ravel(b)) if np.ndim(a) == np.ndim(b) else False
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fciu":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _fill_value(dtype: np.dtype):
    """What a row that gave no value holds: NaN, "", False or 0 (hkl padding is (0, 0, 0))."""
    kind = np.dtype(dtype).kind
    return {"f": np.nan, "c": np.nan, "O": "", "U": "", "S": "", "b": False}.get(kind, 0)


def _is_fill(values: np.ndarray) -> np.ndarray:
    fill = _fill_value(values.dtype)
    if isinstance(fill, float):
        return np.isnan(values)
    return values == fill


def splice_results(old: StageResult, new: StageResult | None, point_ids: Sequence[str], *,
                   extras_over_points: bool = True, drop_inputs: Sequence[str] = ()) -> StageResult:
    """One stage's result over ``point_ids``, each row from ``new`` when it has
    that point, else from ``old``: the rows of points recomputed spliced into
    those kept.

    Parameters
    ----------
    old : StageResult
        The stage's previous result (read back by :func:`read_result`).
    new : StageResult or None
        The stage computed on the points that changed or are new; None when
        none did (points were only removed or reordered).
    point_ids : sequence of str
        The points of the result, in sheet order; each must be in ``new`` or ``old``.
    extras_over_points : bool
        True: ``extra`` arrays are rows over points too (``saxs/peaks/`` of
        the superlattice stage) and are spliced likewise. False: they
        describe the whole series (``transitions/`` of a resumed phase
        stage) and are taken from ``new`` as they are.
    drop_inputs : sequence of str
        Paths of ``old``'s inputs no longer read (files of points removed, or
        that a changed row no longer names).

    Returns
    -------
    StageResult
        As if computed on all of ``point_ids`` at once. A second dimension
        that differs (the longest fitted window, the most peaks) is padded to
        the widest, then trailing columns that no row fills are trimmed, as
        one computation over all points would have sized it.

    Raises
    ------
    SpliceError
        The two results have other axes or attributes (both having points
        that gave values: the axes of a result none of whose points gave a
        value, such as an integration with no readable frame, are not
        compared), another stage, or a dataset of another shape beyond its
        second dimension.
    ValueError
        A point of ``point_ids`` is in neither result.
    """
    if new is not None and new.stage != old.stage:
        raise SpliceError(f"parts of {old.stage} and {new.stage} cannot be spliced")
    stage = old.stage
    new_rows = {p: i for i, p in enumerate(new.point_ids)} if new is not None else {}
    old_rows = {p: i for i, p in enumerate(old.point_ids)}
    n_old = len(old.point_ids)
    take = []   # row of old's arrays, or n_old + row of new's
    for point in point_ids:
        if point in new_rows:
            take.append(n_old + new_rows[point])
        elif point in old_rows:
            take.append(old_rows[point])
        else:
            raise ValueError(f"{stage}: point {point} is in neither the previous nor the new result")
    take = np.asarray(take, dtype=np.int64)

    # Axes and attributes come from the points that gave values: must agree when both sides have some.
    old_gave = any(s == "ok" for s in old.status)
    new_gave = new is not None and any(s == "ok" for s in new.status)

    def reconcile(what: str, a: dict, b: dict) -> dict:
        out = dict(a)
        for key, value in b.items():
            if key not in out or not old_gave:
                out[key] = value
            elif new_gave and not _same(out[key], value):
                raise SpliceError(f"{stage}: {what} {key} differs between the previous and the new points "
                                  f"({out[key]!r} and {value!r})")
        return out

    axes = dict(old.axes) if new is None else reconcile("axis", old.axes, new.axes)
    attrs = dict(old.attrs) if new is None else reconcile("attribute", old.attrs, new.attrs)

    def rows(a: dict, b: dict) -> dict[str, np.ndarray]:
        return {name: _splice_rows(stage, name, a.get(name), b.get(name), n_old,
                                   0 if new is None else len(new.point_ids), take)
                for name in dict.fromkeys([*a, *b])}

    empty: dict = {}
    datasets = rows(old.datasets, empty if new is None else new.datasets)
    if extras_over_points:
        extra = rows(old.extra, empty if new is None else new.extra)
    else:
        extra = dict(old.extra if new is None else new.extra)
    status = np.concatenate([np.asarray(old.status, dtype=object),
                             np.asarray([] if new is None else new.status, dtype=object)])[take]
    dropped = set(drop_inputs)
    records = {r.path: r for r in file_records(old.inputs) if r.path not in dropped}
    for record in file_records([] if new is None else new.inputs):
        records[record.path] = record
    return StageResult(stage=stage, point_ids=list(point_ids), datasets=datasets, axes=axes, extra=extra,
                       attrs=attrs, status=[str(s) for s in status], inputs=list(records.values()))


def _splice_rows(stage: str, name: str, old, new, n_old: int, n_new: int, take: np.ndarray) -> np.ndarray:
    """The rows ``take`` of ``old`` stacked on ``new`` (either may lack the dataset: fill rows)."""
    present = [np.asarray(a) for a in (old, new) if a is not None]
    template = present[0]
    padded = False
    if len(present) == 2 and present[0].shape[1:] != present[1].shape[1:]:
        a, b = present
        if a.ndim != b.ndim or a.ndim < 2 or a.shape[2:] != b.shape[2:]:
            raise SpliceError(f"{stage}/{name}: rows of shape {a.shape[1:]} and {b.shape[1:]}")
        width = max(a.shape[1], b.shape[1])
        old, new = (np.concatenate([x, np.full((len(x), width - x.shape[1], *x.shape[2:]),
                                               _fill_value(x.dtype), dtype=x.dtype)], axis=1)
                    for x in (a, b))
        padded = True
    text = template.dtype.kind in "OUS"

    def block(values, count):
        if values is not None:
            values = np.asarray(values)
            return values.astype(object) if text else values
        return np.full((count, *template.shape[1:]), _fill_value(template.dtype),
                       dtype=object if text else template.dtype)

    stacked = np.concatenate([block(old, n_old), block(new, n_new)])[take]
    if padded and stacked.ndim >= 2 and stacked.shape[1] > 1:
        unused = _is_fill(stacked).reshape(len(stacked), stacked.shape[1], -1).all(axis=(0, 2))
        keep = len(unused) - int(np.argmin(unused[::-1])) if not unused.all() else 1
        stacked = stacked[:, :max(keep, 1)]
    return stacked


def splice_part(old: str | Path, new: str | Path | None, out: str | Path, run_id: str,
                point_ids: Sequence[str], *, extras_over_points: bool = True,
                drop_inputs: Sequence[str] = ()) -> None:
    """The part of one stage over ``point_ids`` from its previous part ``old``
    and a part ``new`` computed on the points that changed or are new
    (:func:`splice_results`, which says what may raise); ``out`` may be ``old``."""
    spliced = splice_results(read_result(old, run_id), None if new is None else read_result(new, run_id),
                             point_ids, extras_over_points=extras_over_points, drop_inputs=drop_inputs)
    write_part(out, run_id, spliced)


def _merge_group(groups: list, dest: h5py.Group, counts: list[int]) -> None:
    fixed = {str(a) for a in groups[0].attrs.get("fixed_axes", [])}
    for key, value in groups[0].attrs.items():
        dest.attrs[key] = value
    names = list(dict.fromkeys(name for g in groups for name in g))
    for name in names:
        present = [g for g in groups if name in g]
        first = present[0][name]
        if isinstance(first, h5py.Group):
            _merge_group([g[name] for g in present], dest.create_group(name), [c for g, c in zip(groups, counts)
                                                                               if name in g])
            continue
        if name in fixed:
            first.file.copy(first, dest, name=name)
            continue
        text = first.dtype.kind == "O"
        arrays = []
        for g, count in zip(groups, counts):
            if name in g:
                arrays.append(g[name].asstr()[()] if text else g[name][()])
            else:  # a chunk where nothing gave this value (no fitted window at all)
                arrays.append(np.full((count, *first.shape[1:]), "" if text else np.nan,
                                      dtype=object if text else float))
        if first.ndim >= 2 and len({a.shape[1] for a in arrays}) > 1:
            # padded as a row that gave fewer values is: NaN, "", or 0 (hkl's (0, 0, 0))
            width = max(a.shape[1] for a in arrays)
            arrays = [np.concatenate([a, np.full((len(a), width - a.shape[1], *a.shape[2:]), _fill_value(a.dtype),
                                                 dtype=a.dtype)], axis=1) for a in arrays]
        dset = write_dataset(dest, name, np.concatenate(arrays))
        for key, value in first.attrs.items():
            dset.attrs[key] = value


def write_inputs(group: h5py.Group, references: Sequence[str | FileRecord]) -> None:
    records = file_records(references)
    # Explicit string type: an empty list would otherwise become floats.
    group.create_dataset("path", data=[r.path for r in records], dtype=STRING)
    group.create_dataset("sha256", data=[r.sha256 for r in records], dtype=STRING)
    dset = write_dataset(group, "size", np.array([r.size for r in records], dtype=np.int64))
    dset.attrs["units"] = "byte"


def combine_status(*statuses: Sequence[str]) -> list[str]:
    """Per point: "ok" when every stage says ok, else the reasons joined by "; "."""
    out = []
    for per_stage in zip(*statuses):
        reasons = [s for s in per_stage if s and s != "ok"]
        out.append("; ".join(reasons) if reasons else "ok")
    return out


def _merge(source, dest: h5py.Group, name: str, part) -> None:
    """Copy ``source`` into ``dest`` as ``name``; a group that is already there
    (``saxs/`` from the integration, ``saxs/peaks/`` from the analysis) gets
    the new members and attributes. Two parts writing one dataset is a bug."""
    if name not in dest:
        source.file.copy(source, dest, name=name)
        return
    target = dest[name]
    if not (isinstance(source, h5py.Group) and isinstance(target, h5py.Group)):
        raise ValueError(f"{part}: {target.name} is written by two stages")
    for key, value in source.attrs.items():
        target.attrs[key] = value
    for member in source:
        _merge(source[member], target, member, part)


def assemble(store_path: str | Path, run_id: str, sheet: Sheet, parts: Sequence[str | Path],
             config_yaml: str, settings: Mapping[str, str] | None = None) -> None:
    """Merge stage parts into the run's store, with points and provenance.

    ``settings`` maps each stage to the digest of its settings in the config
    ``config_yaml`` (:func:`~dacpipe.run.provenance.settings_digest`); a part
    that records another digest was computed with other settings than the
    provenance would say, and is refused. (A part without a digest, written
    before parts recorded one, is taken as it is.)

    Raises
    ------
    StoreError
        A part computed with other settings than ``settings``: one line
        naming it and how to rebuild it.
    ValueError
        If a part was computed for other points than the sheet's (a stale
        part after the sheet changed: the workflow reruns it).
    """
    point_ids = sheet.point_ids
    n = len(point_ids)
    stage_status: list[list[str]] = [[("; ".join(p.problems) or "ok") for p in sheet.points]]
    inputs: list[str | FileRecord] = [str(sheet.path)]
    pressure = np.full(n, np.nan)
    pressure_err = np.full(n, np.nan)
    with atomic_h5(store_path) as out:
        out.attrs["default"] = run_id
        out.attrs["creator"] = "dacpipe"
        out.attrs["file_time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry = out.create_group(run_id)
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "points"
        for part in parts:
            with open_result(part, run_id) as src:
                src_entry = src[run_id]
                part_ids = [s.decode() if isinstance(s, bytes) else s for s in src_entry["point_ids"][()]]
                if part_ids != point_ids:
                    raise ValueError(f"{part}: computed for points {part_ids[:3]}..., the sheet has {point_ids[:3]}...")
                for name in src_entry:
                    if name in ("point_ids", "inputs"):
                        continue
                    _check_settings(part, run_id, name, src_entry[name], settings)
                    _merge(src_entry[name], entry, name, part)
                    if SETTINGS_ATTR in entry[name].attrs:   # checked; the provenance holds the config itself
                        del entry[name].attrs[SETTINGS_ATTR]
                    stage = src_entry[name]
                    if isinstance(stage, h5py.Group) and "status" in stage:
                        stage_status.append(list(stage["status"].asstr()[()]))
                    # A stage's per-point warnings (a mask that leaves few pixels, a frame
                    # header that disagrees with the PONI) join the point's status; the
                    # stage's own status stays "ok", so the stages after it use the point.
                    if isinstance(stage, h5py.Group) and "warnings" in stage and stage["warnings"].ndim == 1:
                        stage_status.append([f"{name} warning: {w}" if w else "ok"
                                             for w in stage["warnings"].asstr()[()]])
                # The parts checksummed their inputs when they read them.
                table = src_entry["inputs"]
                inputs += [FileRecord(p, h, int(n)) for p, h, n in
                           zip(table["path"].asstr()[()], table["sha256"].asstr()[()], table["size"][()])]
            if "pressure" in entry:
                pressure = entry["pressure/pressure_GPa"][()]
                pressure_err = entry["pressure/pressure_err_GPa"][()]

        points = entry.create_group("points")
        set_attrs(points, {"NX_class": "NXdata", "signal": "pressure_GPa", "axes": ["."]})
        write_dataset(points, "point", point_ids)
        write_dataset(points, "pressure_GPa", pressure)
        write_dataset(points, "pressure_err_GPa", pressure_err)
        write_dataset(points, "temperature_K", [p.temperature_K for p in sheet.points])
        write_dataset(points, "status", combine_status(*stage_status))
        write_dataset(points, "note", [p.note for p in sheet.points])

        prov = entry.create_group("provenance")
        prov.attrs["NX_class"] = "NXcollection"
        write_dataset(prov, "config", config_yaml)
        write_dataset(prov, "versions", json.dumps(versions(), sort_keys=True))
        records = sorted(file_records(inputs), key=lambda r: r.path)
        write_inputs(prov.create_group("inputs"), records)


def _check_settings(part, run_id: str, name: str, member, settings: Mapping[str, str] | None) -> None:
    """Refuse a part's stage group whose settings digest is not the config's."""
    if settings is None or not isinstance(member, h5py.Group) or SETTINGS_ATTR not in member.attrs:
        return
    if name in settings and _attr_value(member.attrs[SETTINGS_ATTR]) != settings[name]:
        raise StoreError(f"{part}: computed with other settings of runs.{run_id} ({name}) than the config being "
                         "stored (a part left by an earlier config, or written by another process); rebuild it: "
                         "dacpipe run, or snakemake --forcerun on its rule")


def read_points(store_path: str | Path, run_id: str | None = None) -> dict[str, np.ndarray]:
    """The ``points`` table of a store as arrays (strings decoded)."""
    with open_result(store_path, run_id) as h5:
        run_id = run_id or h5.attrs["default"]
        group = h5[run_id]["points"]
        return {name: (group[name].asstr()[()] if group[name].dtype.kind == "O" else group[name][()])
                for name in group}

"""The integration stages (``xrd`` and ``saxs``): every point's frame to a 1D pattern.

Frames are read in a background thread while the previous one is
integrated (:class:`~dacpipe.integration.integrator.FrameIntegrator`), and
checksummed there for provenance (a CBF frame from the same bytes it is
decoded from: each is read from disk once); a frame that cannot be used
leaves a NaN row and its reason in the point's status, and the other points
go on.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from ..core.units import q_from_two_theta, two_theta_from_q
from ..io.images import allow_links_outside, input_files, read_frame_file, read_image
from ..io.refs import FileRecord, file_part, file_record
from ..io.sheet import Point
from .frames import frame_header, frame_normalization, header_warnings, header_wavelength
from .from_patterns import has_patterns, run_with_patterns
from .integrator import FrameIntegrator, IntegrationSettings

def _prefetch(references: Sequence[str | None], read: Callable[[str, bytes | None], np.ndarray]
              ) -> Iterator[tuple[int, np.ndarray | InputError | None, list[FileRecord] | None, object]]:
    """Frames in order, each with its file's checksum, the next one read (and
    hashed) in a thread while the caller integrates this one.

    ``read(reference, content)`` decodes a frame; ``content`` is the file's
    bytes when :func:`read_frame_file` took them (a CBF), which are then
    checksummed too, so the file is read once; other files are hashed from
    the page cache, each file once (the frames of an HDF5 stack share one).
    """
    hashed: set[str] = set()
    # A file's header is the same for all its frames (an HDF5 stack): read once.
    headers: dict[str, object] = {}

    def load(ref):
        if ref is None:
            return None, None, None
        path = file_part(ref)
        content = header = None
        try:
            content = read_frame_file(ref)
            frame = read(ref, content)
            if content is not None:    # a CBF: wavelength, distance from the same bytes
                header = frame_header(ref, content)
            else:
                if path not in headers:
                    headers[path] = frame_header(ref, None)
                header = headers[path]
        except InputError as err:
            frame = err.with_path(path)
        records = []
        if path not in hashed:
            records.append(file_record(path, content=content))
            hashed.add(path)
            # An HDF5 master's linked data files (and any file a virtual
            # dataset or external storage reads) are inputs too.
            for linked in map(str, input_files(ref)[1:] if content is None else ()):  # a CBF links nothing
                if linked not in hashed:
                    records.append(file_record(linked))
                    hashed.add(linked)
        return frame, records, header

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, references[0]) if references else None
        for i in range(len(references)):
            current, records, header = pending.result()
            pending = pool.submit(load, references[i + 1]) if i + 1 < len(references) else None
            yield i, current, records, header


def run(ctx: StageContext) -> StageResult:
    """Integrate the ``ctx.stage`` ("xrd" or "saxs") frame of every point of the sheet.

    Points without a frame, or whose frame cannot be used, get NaN rows and
    their reason in the status; the other points are integrated.
    """
    sheet, kind = ctx.sheet, ctx.stage
    if kind == "xrd" and has_patterns(sheet):  # patterns integrated elsewhere: from_patterns.py
        return run_with_patterns(ctx, run)
    settings = IntegrationSettings.from_config(ctx.run[kind])
    allow_links_outside(ctx.run[kind]["hdf5_links_outside"])
    n = len(sheet.points)
    references = [p.files.get(kind) for p in sheet.points]
    # No wavelength in config or PONI: the first frame header's (Pilatus CBF, Eiger).
    settings, wavelength_source = header_wavelength(settings, references)
    header_notes = [""] * n
    # The first frame's shape only for PONI files that do not give one (an
    # extra read of that frame).
    integrator = FrameIntegrator(settings, shape=lambda: _first_shape(references))
    shape = integrator.geometry.detector_shape
    intensity = np.full((n, settings.npt), np.nan)
    sigma = np.full((n, settings.npt), np.nan)
    # The cake costs N x n_azimuthal x npt numbers: only when asked for.
    cake = None if not settings.cake_npt_azimuthal else \
        np.full((n, settings.cake_npt_azimuthal, settings.npt), np.nan, dtype=np.float32)
    chi = None
    # Pixels masked as spots in each frame (rejection "spots"), NaN where not integrated.
    spot_pixels = np.full(n, np.nan) if settings.rejection == "spots" else None
    spot_blobs = np.full(n, np.nan) if settings.rejection == "spots" else None
    radial = pixel_mean = None
    status = ["ok"] * n
    methods = set()
    inputs: list[str | FileRecord] = [settings.poni] + [r for r in (settings.mask, settings.dark, settings.flat) if r]
    # The reader thread also prepares each frame (orientation, the spot search):
    # numpy's passes over the image run there beside pyFAI's integration.
    prepare = integrator.prepare
    if integrator.mask_warning:  # once per run; each pattern's warnings say it too
        ctx.warn(f"{ctx.run_id}: {kind}: {integrator.mask_warning} ({settings.mask or settings.poni})")
    for i, frame, records, header in _prefetch(references,
                                               lambda ref, content: prepare(read_image(ref, shape, content=content))):
        inputs.extend(records or ())
        point = sheet.points[i]
        if frame is None:
            status[i] = f"{kind}: not measured"
        else:
            try:
                if isinstance(frame, InputError):
                    raise frame
                pattern = integrator.integrate(frame, _normalization(point, settings)
                                               * frame_normalization(references[i], ctx.run[kind]))
            except InputError as err:
                err = err.with_path(file_part(references[i]))
                status[i] = f"{kind} skipped: {err}"
                ctx.warn_point(point.point, str(err))
            else:
                intensity[i], sigma[i] = pattern.intensity, pattern.sigma
                if spot_pixels is not None:
                    spot_pixels[i], spot_blobs[i] = pattern.spot_pixels, pattern.spot_blobs
                if radial is None:
                    radial = pattern.radial
                    # The first frame's flagged pixels (module gaps) stand for every frame's.
                    pixel_mean = integrator.pixel_mean_radial(frame.raw)
                if cake is not None:
                    cake[i], chi = pattern.cake, pattern.chi_deg
                methods.add(pattern.method)
                header_text = "; ".join(header_warnings(integrator.geometry, header))
                if header_text:
                    ctx.warn_point(point.point, f"{file_part(references[i])}: {header_text}")
                header_notes[i] = "; ".join(filter(None, [header_text, integrator.mask_warning]))
        ctx.progress(i + 1, n)

    if radial is None:  # no frame could be integrated: axes from the geometry alone
        radial = _empty_radial(integrator, settings)
    q_A, two_theta = _axes(radial, settings.unit, integrator.wavelength_A)
    attrs = {"poni": settings.poni, "poni_convention": settings.poni_convention,
             "wavelength_A": integrator.wavelength_A, "unit": settings.unit, "npt": settings.npt,
             "method": ", ".join(sorted(methods)), "rejection": settings.rejection,
             "polarization_factor": math.nan if settings.polarization_factor is None
             else settings.polarization_factor, "mask": settings.mask or "",
             "wavelength_source": wavelength_source, "frames": ctx.run[kind].get("frames", "sum")}
    datasets = {"I": intensity, "I_errors": sigma, "warnings": np.array(header_notes, dtype=object)}
    if spot_pixels is not None:
        datasets["spot_pixels"], datasets["spot_blobs"] = spot_pixels, spot_blobs
    axes = {"q": q_A, "two_theta": two_theta}
    if pixel_mean is None and integrator.geometry.detector_shape is not None:
        pixel_mean = integrator.pixel_mean_radial()
    if pixel_mean is not None:
        # Where each bin samples the pattern (the mean of its pixels' centres):
        # the structural fits model the pattern there.
        axes["pixel_mean_q_A"] = _axes(pixel_mean, settings.unit, integrator.wavelength_A)[0]
    if cake is not None:
        datasets["cake/I"] = cake
        axes["cake/chi_deg"] = chi if chi is not None else np.full(settings.cake_npt_azimuthal, np.nan)
        axes["cake/radial"] = radial
    return StageResult(stage=kind, point_ids=sheet.point_ids, status=status, attrs=attrs, inputs=inputs,
                       datasets=datasets, axes=axes)


def _normalization(point: Point, settings: IntegrationSettings) -> float:
    if settings.normalization != "monitor":
        return 1.0
    if not (math.isfinite(point.monitor) and point.monitor > 0):
        raise InputError(f"normalization by monitor, but the sheet gives monitor {point.monitor!r}")
    return point.monitor


def _first_shape(references: Iterable[str | None]) -> tuple[int, int] | None:
    """The shape of the first readable frame, for PONI files that do not give one."""
    for ref in references:
        if ref is None:
            continue
        try:
            return read_image(ref).shape
        except InputError:
            continue
    return None


def _axes(radial: np.ndarray, unit: str, wavelength_A: float) -> tuple[np.ndarray, np.ndarray]:
    if unit == "2th_deg":
        return q_from_two_theta(radial, wavelength_A), radial
    q_A = radial / 10.0 if unit == "q_nm^-1" else radial
    return q_A, two_theta_from_q(q_A, wavelength_A)


def _empty_radial(integrator: FrameIntegrator, settings: IntegrationSettings) -> np.ndarray:
    shape = integrator.geometry.detector_shape
    if shape is None:
        return np.full(settings.npt, np.nan)
    result = integrator.geometry.integrator.integrate1d(np.zeros(shape, np.float32), settings.npt,
                                                        unit=settings.unit, method=settings.method)
    return np.asarray(result.radial)

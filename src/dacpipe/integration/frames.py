"""What a frame's file says about the beam, and how many frames a point sums.

:func:`header_wavelength` gives the integration a wavelength from the first
frame's header when the PONI file has none (and the config gives none);
:func:`header_warnings` compares every frame's header with the geometry
(:func:`dacpipe.io.poni.check_header`: 1e-4 relative in wavelength, 1 % in
distance); :func:`frame_normalization` turns a summed range of frames into
their mean for ``frames: mean``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from ..core.errors import InputError
from ..io.images import BeamHeader, read_frame_file, read_header
from ..io.poni import Geometry, check_header, poni_wavelength_A
from ..io.refs import file_part, parse_reference


def header_wavelength(settings, references: Sequence[str | None]):
    """``settings`` with the first frame header's wavelength when neither the
    config nor the PONI file gives one, and where the wavelength comes from.

    Returns
    -------
    (settings, str)
        The settings (unchanged unless the header's wavelength was taken)
        and ``"config"``, ``"PONI"`` or ``"header of <file>"``.
    """
    if settings.wavelength_A is not None:
        return settings, "config"
    try:
        if poni_wavelength_A(settings.poni) is not None:
            return settings, "PONI"
    except InputError:
        return settings, "PONI"  # the integrator reports the file's problem
    for ref in references:
        if ref is None:
            continue
        try:
            header = read_header(ref)
        except InputError:
            continue
        if math.isfinite(header.wavelength_A):
            return replace(settings, wavelength_A=header.wavelength_A), f"header of {file_part(ref)}"
    return settings, "PONI"  # none anywhere: the integrator says so


def frame_normalization(reference: str | None, section: dict) -> float:
    """The factor a frame's integration is normalized by for ``frames: mean``:
    the number of frames its reference sums (1 otherwise).

    The reader sums a range (counts: Poisson variance = the sum); dividing
    the integrated sum by n through pyFAI's normalization factor gives the
    mean with sigma = sqrt(sum) / n, which integrating a mean image with a
    Poisson model (sigma = sqrt(mean)) would overstate by sqrt(n).
    """
    if reference is None or section.get("frames", "sum") != "mean":
        return 1.0
    try:
        return float(parse_reference(reference).n_frames)
    except InputError:
        return 1.0


def frame_header(reference: str, content: bytes | None) -> BeamHeader | None:
    """The frame's header (from ``content``, the bytes already read, for a CBF), None when unreadable."""
    try:
        return read_header(reference, content if content is not None else read_frame_file(reference))
    except InputError:
        return None


def header_warnings(geometry: Geometry, header: BeamHeader | None) -> list[str]:
    """Where the frame's header disagrees with the geometry used (one line each)."""
    if header is None:
        return []
    return check_header(geometry, header.wavelength_A, header.distance_m)

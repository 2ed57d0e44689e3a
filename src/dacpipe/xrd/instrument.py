"""The instrument's line width, from a calibrant pattern of the same setup.

A calibrant (CeO2, LaB6, Si: micrometre crystallites, no strain) has lines
as narrow as the diffractometer makes them. Their FWHM in 2theta follows
Caglioti, Paoletti & Ricci (Nucl. Instrum. 3, 223 (1958)):

    FWHM^2 = U tan^2(theta) + V tan(theta) + W        (2theta in degrees)

The calibrant's lines are placed from its d-spacings (pyFAI's calibrant
files) and the wavelength, each fitted as a pseudo-Voigt
(:func:`dacpipe.xrd.peaks.fit_peaks`), and U, V, W follow by weighted
linear least squares on FWHM^2 with the covariance scaled by dacpipe's one
rule (:func:`dacpipe.core.lsq.covariance_scale`).

The Lorentzian fraction of the calibrant's lines (their mean eta, weighted
by their areas) is kept beside U, V, W: the instrument's width is taken out
of a sample's by parts (:mod:`dacpipe.xrd.size_strain`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.lsq import covariance_scale
from ..core.units import two_theta_from_q
from ..io.patterns import read_pattern
from .peaks import fit_peaks

# A calibrant line is used when no other line of the calibrant lies within this many
# of its FWHM: the width of a line fitted beside a neighbour trades with the neighbour's.
ISOLATION_FWHM = 2.0
# A fitted peak is the calibrant's line when its centre is within this share of its FWHM of it.
MATCH_FWHM = 0.5
# Fewest lines a Caglioti fit takes: three parameters and one degree of freedom.
MIN_LINES = 4


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays would be ambiguous
class Caglioti:
    """The instrument's FWHM in 2theta (degrees): FWHM^2 = U tan^2 theta + V tan theta + W.

    Attributes
    ----------
    U_deg2, V_deg2, W_deg2 : float
        Caglioti's parameters (deg^2).
    covariance : ndarray
        3 x 3 covariance of (U, V, W).
    eta : float
        Lorentzian fraction of the instrument's lines (0: Gaussian).
    line_two_theta_deg, line_fwhm_deg, line_fwhm_err_deg : tuple of float
        The calibrant lines the fit used (empty when U, V, W were given).
    reduced_chi2 : float
        Of the fit (NaN when U, V, W were given).
    source : str
        Where U, V, W come from (the calibrant pattern's file, or "config").
    """

    U_deg2: float
    V_deg2: float
    W_deg2: float
    covariance: np.ndarray
    eta: float = 0.0
    line_two_theta_deg: tuple = ()
    line_fwhm_deg: tuple = ()
    line_fwhm_err_deg: tuple = ()
    reduced_chi2: float = math.nan
    source: str = "config"

    @classmethod
    def given(cls, U_deg2: float, V_deg2: float, W_deg2: float, eta: float = 0.0,
              source: str = "config") -> Caglioti:
        """U, V, W known (a refinement of the setup elsewhere): no error on them."""
        return cls(float(U_deg2), float(V_deg2), float(W_deg2), np.zeros((3, 3)), float(eta), source=source)

    @classmethod
    def constant(cls, fwhm_deg: float) -> Caglioti:
        """One width at every angle (``indexing.instrument_fwhm_deg``), Gaussian: W = FWHM^2."""
        return cls.given(0.0, 0.0, float(fwhm_deg) ** 2, 0.0, source="instrument_fwhm_deg")

    @property
    def parameters(self) -> np.ndarray:
        return np.array([self.U_deg2, self.V_deg2, self.W_deg2])

    def fwhm_deg(self, two_theta_deg) -> tuple[np.ndarray, np.ndarray]:
        """The instrument's FWHM (deg) at ``two_theta_deg`` and its standard error;
        NaN where the law gives FWHM^2 <= 0."""
        t = np.tan(np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0)
        g = np.stack([t * t, t, np.ones_like(t)], axis=-1)
        h2 = g @ self.parameters
        var_h2 = np.einsum("...i,ij,...j->...", g, self.covariance, g)
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(h2 > 0, np.sqrt(np.where(h2 > 0, h2, 1.0)), np.nan)
            # d(sqrt(H2)) = dH2 / (2 H)
            err = np.sqrt(np.maximum(var_h2, 0.0)) / (2.0 * h)
        return h, err


def fit_caglioti(two_theta_deg, fwhm_deg, fwhm_err_deg, *, eta: float = 0.0, source: str = "") -> Caglioti:
    """U, V, W from line widths by weighted linear least squares on FWHM^2.

    Caglioti, Paoletti & Ricci, Nucl. Instrum. 3, 223 (1958). The weights
    are 1 / sigma(FWHM^2)^2 with sigma(FWHM^2) = 2 FWHM sigma(FWHM); the
    covariance is (A^T W A)^-1 times :func:`dacpipe.core.lsq.covariance_scale`.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_LINES` lines with a finite width and error.
    """
    tth, h, s = (np.asarray(a, dtype=float) for a in (two_theta_deg, fwhm_deg, fwhm_err_deg))
    ok = np.isfinite(tth) & np.isfinite(h) & np.isfinite(s) & (h > 0) & (s > 0)
    if ok.sum() < MIN_LINES:
        raise InputError(f"{int(ok.sum())} calibrant lines with a measured width; a Caglioti fit needs "
                         f"at least {MIN_LINES}", source or None)
    tth, h, s = tth[ok], h[ok], s[ok]
    t = np.tan(np.radians(tth) / 2.0)
    design = np.column_stack([t * t, t, np.ones_like(t)])
    sigma_h2 = 2.0 * h * s
    a = design / sigma_h2[:, None]
    b = h * h / sigma_h2
    params, *_ = np.linalg.lstsq(a, b, rcond=None)
    resid = b - a @ params
    dof = len(b) - 3
    chi2 = float(resid @ resid) / dof
    cov = np.linalg.inv(a.T @ a) * covariance_scale(chi2, sigma_given=True)
    return Caglioti(float(params[0]), float(params[1]), float(params[2]), cov, float(eta),
                    tuple(float(v) for v in tth), tuple(float(v) for v in h), tuple(float(v) for v in s),
                    chi2, source)


def calibrant_d_spacings_A(calibrant: str) -> np.ndarray:
    """d-spacings (A) of a pyFAI calibrant, by name (``CeO2``, ``LaB6``, ...) or ``.D`` file."""
    from pyFAI.calibrant import CALIBRANT_FACTORY, Calibrant

    if calibrant in CALIBRANT_FACTORY:
        d = CALIBRANT_FACTORY(calibrant).dspacing
    elif os.path.isfile(calibrant):
        try:
            d = Calibrant(filename=calibrant).dspacing
        except Exception as exc:  # pyFAI raises what its parser meets
            raise InputError(f"pyFAI cannot read this calibrant file ({exc})", calibrant) from None
    else:
        raise InputError(f"unknown calibrant {calibrant!r}: a pyFAI name (CeO2, LaB6, Si, ...) or a .D file")
    return np.asarray(d, dtype=float)


def caglioti_from_pattern(two_theta_deg, intensity, sigma, wavelength_A: float, calibrant: str = "CeO2", *,
                          min_snr: float = 10.0, source: str = "") -> Caglioti:
    """Caglioti's U, V, W from a calibrant's 1D pattern in 2theta (degrees).

    The calibrant's lines within the pattern (2 theta = 2 asin(lambda / 2d))
    are fitted as pseudo-Voigts from their predicted positions; a line is used
    when it stands ``min_snr`` noise sigma above the background, its fitted
    centre lies within :data:`MATCH_FWHM` of its FWHM of the prediction, and
    no other calibrant line lies within :data:`ISOLATION_FWHM` FWHM of it.
    """
    tth = np.asarray(two_theta_deg, dtype=float)
    finite = np.isfinite(tth)
    lo, hi = float(np.nanmin(tth[finite])), float(np.nanmax(tth[finite]))
    d = calibrant_d_spacings_A(calibrant)
    s = wavelength_A / (2.0 * d)
    lines = np.sort(np.degrees(2.0 * np.arcsin(s[s < 1.0])))
    lines = lines[(lines > lo) & (lines < hi)]
    if len(lines) < MIN_LINES:
        raise InputError(f"{len(lines)} lines of {calibrant} fall within 2theta {lo:.3g}-{hi:.3g} deg at "
                         f"{wavelength_A:g} A; a Caglioti fit needs at least {MIN_LINES}", source or None)
    fit = fit_peaks(tth, intensity, sigma, positions=lines, min_snr=min_snr)
    used = []
    for peak in fit.peaks:
        j = int(np.argmin(np.abs(lines - peak.position)))
        others = np.delete(lines, j)
        if abs(peak.position - lines[j]) > MATCH_FWHM * peak.fwhm:
            continue
        if len(others) and np.min(np.abs(others - lines[j])) < ISOLATION_FWHM * peak.fwhm:
            continue
        used.append(peak)
    areas = np.array([p.area for p in used])
    eta = float(np.sum(areas * [p.eta for p in used]) / np.sum(areas)) if used and np.sum(areas) > 0 else 0.0
    return fit_caglioti([p.position for p in used], [p.fwhm for p in used], [p.fwhm_err for p in used],
                        eta=eta, source=source)


def caglioti_from_file(path, calibrant: str = "CeO2", wavelength_A: float | None = None, *,
                       min_snr: float = 10.0) -> Caglioti:
    """Caglioti's U, V, W from a calibrant pattern file (.xy, .chi, .xye: :func:`dacpipe.io.patterns.read_pattern`).

    ``wavelength_A`` overrides the file's header (a q file needs one of them).
    """
    pattern = read_pattern(path, wavelength_A=wavelength_A)
    if not math.isfinite(pattern.wavelength_A):
        raise InputError("the calibrant pattern is in q and no wavelength is given", path)
    tth = two_theta_from_q(pattern.q_A, pattern.wavelength_A)
    return caglioti_from_pattern(tth, pattern.intensity, pattern.sigma, pattern.wavelength_A, calibrant,
                                 min_snr=min_snr, source=str(path))


def instrument_from_config(section: dict | None, wavelength_A: float,
                           instrument_fwhm_deg: float = 0.0) -> Caglioti | None:
    """The instrument of a run's ``indexing.instrument`` (``config/schema.yaml``).

    ``{calibrant_pattern: path, calibrant: CeO2}``: fitted to the pattern
    (:func:`caglioti_from_file`; a pattern without a wavelength in its header
    is read at ``wavelength_A``, the run's, or the section's own);
    ``{caglioti_deg2: [U, V, W], eta: 0}``: as given; none: a constant,
    Gaussian ``instrument_fwhm_deg`` when it is positive, else None (no
    instrument taken out).
    """
    if not section:
        return Caglioti.constant(instrument_fwhm_deg) if instrument_fwhm_deg > 0 else None
    if "caglioti_deg2" in section:
        u, v, w = (float(x) for x in section["caglioti_deg2"])
        return Caglioti.given(u, v, w, float(section.get("eta", 0.0)))
    path = section["calibrant_pattern"]
    override = section.get("wavelength_A")
    try:
        pattern = read_pattern(path, wavelength_A=override)
    except InputError:
        if override is not None:
            raise
        pattern = read_pattern(path, wavelength_A=wavelength_A)   # a 2theta file without a header wavelength
    wavelength = pattern.wavelength_A if math.isfinite(pattern.wavelength_A) else float(wavelength_A)
    tth = two_theta_from_q(pattern.q_A, wavelength)
    return caglioti_from_pattern(tth, pattern.intensity, pattern.sigma, wavelength,
                                 str(section.get("calibrant", "CeO2")), source=str(path))

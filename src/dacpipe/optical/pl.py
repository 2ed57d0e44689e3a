"""Photoluminescence bands fitted in photon energy.

:func:`fit_pl_peak` finds the strongest emission band and fits it with a
Gaussian or pseudo-Voigt (:mod:`dacpipe.core.profiles`) over a background
linear in the measured axis, weighted by the local noise, with lmfit. Arrays in, no
files; a spectrum without a trustworthy band raises
:class:`~dacpipe.core.errors.InputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lmfit
import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import find_peaks, savgol_coeffs, savgol_filter

from ..core.errors import InputError
from ..core.lsq import covariance_scale
from ..core.noise import MAD_TO_SIGMA, running_difference_sigma
from ..core.profiles import FOUR_LN2, height_derivatives, pseudo_voigt_height, unit_parts
from .curves import checked_spectrum

PROFILES = ("gaussian", "pseudo-voigt")


MIN_PEAK_SNR = 12.0
"""Prominence of an emission band in the smoothed spectrum, in local noise
sigmas. On 300 noise-only synthetic PL spectra (400 points, Poisson counts
through the wavelength-to-energy Jacobian) the most prominent noise bump
reached 4.8 (median) to 9.0 (maximum); the synthetic HgTe bands stand at 28-270."""


_GAUSS_AREA = math.sqrt(math.pi / FOUR_LN2)  # area of a unit-height Gaussian per unit FWHM


@dataclass(frozen=True)
class EmissionFit:
    """An emission band fitted in energy.

    Attributes
    ----------
    energy_eV, energy_err_eV : float
        Centre of the profile and its standard error.
    fwhm_eV, fwhm_err_eV : float
    area, area_err : float
        Integrated intensity over energy (units of the intensity times eV).
    amplitude : float
        Height above the background.
    eta : float
        Lorentzian fraction (0 for a Gaussian).
    background : tuple of float
        (value at the centre, slope per eV) of the background, in the
        intensity units at the peak (see ``background_scale``).
    window_eV : tuple of float
    snr : float
        Prominence of the band in the smoothed spectrum over its local noise.
    reduced_chi2 : float
        With the local noise estimate as the point errors.
    profile : str
    """

    energy_eV: float
    energy_err_eV: float
    fwhm_eV: float
    fwhm_err_eV: float
    area: float
    area_err: float
    amplitude: float
    eta: float
    background: tuple[float, float]
    window_eV: tuple[float, float]
    snr: float
    reduced_chi2: float
    profile: str


# The parameters of a band fit, in the order of the covariance used below.
_PARAMS = ("center_eV", "fwhm_eV", "height", "eta", "bg0", "bg1_per_eV")


def _band(energy_eV, center_eV, fwhm_eV, height, eta):
    """The band: a pseudo-Voigt of height ``height`` (:func:`~dacpipe.core.profiles.pseudo_voigt_height`)."""
    return height * pseudo_voigt_height(energy_eV, center_eV, fwhm_eV, eta)


def _background(energy_eV, scale, reference_eV, bg0, bg1_per_eV):
    """A straight line in the measured axis: (bg0 + bg1 (E - E_ref)) times the Jacobian ``scale``.

    ``reference_eV`` is fixed (the band's first estimate); the background
    under the fitted centre is computed afterwards.
    """
    return (bg0 + bg1_per_eV * (energy_eV - reference_eV)) * scale


def _residual(params, energy_eV, y, sigma, scale, reference_eV):
    """(data - band - background) / sigma, for lmfit."""
    v = params.valuesdict()
    model = (_band(energy_eV, v["center_eV"], v["fwhm_eV"], v["height"], v["eta"])
             + _background(energy_eV, scale, reference_eV, v["bg0"], v["bg1_per_eV"]))
    return (y - model) / sigma


def _jacobian(params, energy_eV, y, sigma, scale, reference_eV):
    """d residual / d parameter, analytic (:func:`~dacpipe.core.profiles.height_derivatives`).

    Columns in the order of the varied parameters (lmfit's ``var_names``:
    those with ``vary`` and no constraint, in insertion order).
    """
    v = params.valuesdict()
    u, lorentz, gauss = unit_parts(energy_eV, v["center_eV"], v["fwhm_eV"])
    d_center, d_fwhm, d_eta = height_derivatives(u, lorentz, gauss, v["eta"], v["fwhm_eV"])
    columns = {
        "center_eV": v["height"] * d_center,
        "fwhm_eV": v["height"] * d_fwhm,
        "height": v["eta"] * lorentz + (1.0 - v["eta"]) * gauss,
        "eta": v["height"] * d_eta,
        "bg0": scale,
        "bg1_per_eV": (energy_eV - reference_eV) * scale,
    }
    free = [name for name, p in params.items() if p.vary and not p.expr]
    return -np.column_stack([columns[name] for name in free]) / sigma[:, None]


def _fit_band(params, energy_eV, y, sigma, scale, reference_eV):
    """One weighted least squares of band + background (lmfit, trust-region reflective, analytic Jacobian).

    lmfit's Minimizer on Parameters rather than a composite ``lmfit.Model``:
    the same minimisation, but Model.fit's copies of the parameters and its
    result object doubled the time of a PL fit (7.5 against 3.8 ms before
    lmfit; 4.6 ms this way, benchmarks/bench_fits.py). scale_covar=False:
    the covariance comes back unscaled, and the caller applies
    :func:`~dacpipe.core.lsq.covariance_scale`.
    """
    minimizer = lmfit.Minimizer(_residual, params, fcn_args=(energy_eV, y, sigma, scale, reference_eV),
                                scale_covar=False)
    result = minimizer.minimize(method="least_squares", max_nfev=2000, jac=_jacobian)
    if not result.success:
        raise InputError(f"emission band fit did not converge ({result.message})")
    return result


def local_noise(values, width: int = 61) -> np.ndarray:
    """Noise of each point from the running median of |second differences|.

    Photon counting makes the noise grow with the signal, and the Jacobian
    of a wavelength-to-energy conversion multiplies it by lambda^2, so one
    number for the whole spectrum will not do.
    """
    sigma = running_difference_sigma(values, width, order=2)
    floor = max(float(np.median(sigma)) * 1e-3, np.finfo(float).tiny)
    return np.maximum(sigma, floor)


def fit_pl_peak(energy_eV, intensity, *, profile: str = "gaussian", min_snr: float = MIN_PEAK_SNR,
                smoothing_points: int = 7, background_scale=None) -> EmissionFit:
    """Fit the strongest emission band of a spectrum in energy.

    The band is the most significant maximum of the lightly smoothed
    spectrum (its prominence over the local noise of the smoothed curve);
    it is then fitted over +- 3 FWHM with a Gaussian or pseudo-Voigt
    (Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79 (1987)) on a linear
    background, by least squares weighted with the local noise (first from
    second differences, :func:`local_noise`, then from the residual of that
    first fit); errors from the covariance scaled by the reduced chi^2. The
    fit is on :class:`lmfit.Parameters` (bounds on centre, width, height and
    eta; eta fixed at 0 for a Gaussian), minimised by lmfit's
    ``least_squares`` (trust-region reflective) with an analytic Jacobian.

    A dark level or stray light is flat per detector pixel, i.e. in the
    measured axis; through the wavelength-to-energy Jacobian it becomes
    steeply curved in energy (per eV ~ lambda^2, 5x across a band at
    0.3 eV), which a straight background cannot follow: the synthetic bands
    below 0.35 eV came out 3-4 meV low. With ``background_scale`` (the
    Jacobian applied to each point) the background is linear in the
    measured units, ``(b0 + b1 (E - Ec)) * scale``.

    Parameters
    ----------
    energy_eV, intensity : array_like
        Intensity per unit energy (see :func:`dacpipe.optical.to_energy` for
        the Jacobian).
    profile : {"gaussian", "pseudo-voigt"}
    min_snr : float
        Required prominence of the band, in noise sigmas of the smoothed
        spectrum (:data:`MIN_PEAK_SNR`).
    smoothing_points : int
        Savitzky-Golay window (quadratic, in points as measured) used to find
        the band, not to fit it. Points, not eV: a spectrometer's sampling is
        uniform in its own axis, and the noise estimate is per point.
    background_scale : array_like, optional
        Per point, the factor the intensity was multiplied by to become a
        density per eV (:func:`dacpipe.optical.jacobian`); None: 1.

    Raises
    ------
    InputError
        "no emission peak above noise", or a fit that does not converge.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    e, y = np.asarray(energy_eV, dtype=float).ravel(), np.asarray(intensity, dtype=float).ravel()
    scale = np.ones_like(e) if background_scale is None else np.asarray(background_scale, dtype=float).ravel()
    if not (e.shape == y.shape == scale.shape):
        raise ValueError("energy, intensity and background_scale have different lengths")
    keep = np.isfinite(e) & np.isfinite(y) & np.isfinite(scale)
    order = np.argsort(e[keep], kind="stable")
    scale = scale[keep][order]
    e, y = checked_spectrum(e[keep][order], y[keep][order], "emission")
    m = max(5, smoothing_points + 1 - smoothing_points % 2)
    smooth = savgol_filter(y, m, 2)
    noise = local_noise(y)
    sigma_s = noise * float(np.sqrt(np.sum(savgol_coeffs(m, 2) ** 2)))
    peaks, props = find_peaks(smooth, prominence=0.0)
    # The filter's and the noise estimate's last points are extrapolations:
    # a band must have a full window of points on either side.
    inside = (peaks >= m) & (peaks < y.size - m)
    peaks, prominence = peaks[inside], props["prominences"][inside]
    if peaks.size == 0:
        raise InputError("no emission peak above noise (no maximum inside the spectrum)")
    z = prominence / sigma_s[peaks]
    k = int(np.argmax(z))
    if z[k] < min_snr:
        raise InputError(f"no emission peak above noise (strongest band {z[k]:.1f} noise sigmas, "
                         f"need {min_snr:g})")
    i = int(peaks[k])
    center0, height0 = float(e[i]), float(prominence[k])
    level = smooth[i] - 0.5 * height0
    lo, hi = i, i
    while lo > 0 and smooth[lo] > level:
        lo -= 1
    while hi < y.size - 1 and smooth[hi] > level:
        hi += 1
    step = float(np.median(np.diff(e[max(lo - 1, 0):hi + 2])))
    fwhm0 = max(float(e[hi] - e[lo]), 3.0 * step)
    window = (e >= center0 - 3.0 * fwhm0) & (e <= center0 + 3.0 * fwhm0)
    if window.sum() < 10:
        raise InputError(f"emission band at {center0:.3f} eV has only {int(window.sum())} points")
    ew, yw, sw = e[window], y[window], noise[window]
    cw = scale[window] / scale[i]
    bg0 = float(smooth[i] - height0)
    span = ew[-1] - ew[0]
    params = lmfit.Parameters()
    params.add("center_eV", value=center0, min=ew[0], max=ew[-1])
    params.add("fwhm_eV", value=fwhm0, min=0.5 * step, max=2.0 * span)
    params.add("height", value=height0, min=0.0)
    if profile == "pseudo-voigt":
        params.add("eta", value=0.5, min=0.0, max=1.0)
    else:
        params.add("eta", value=0.0, vary=False)
    params.add("bg0", value=bg0)
    params.add("bg1_per_eV", value=0.0)
    try:
        result = _fit_band(params, ew, yw, sw, cw, center0)
        # Second differences also see the band's own curvature where it is
        # sampled coarsely; the residual does not. Refit with the noise of
        # the residual (running MAD over 15 points), which follows the
        # photon noise across the band.
        residual = np.abs(result.residual * sw)
        sw = np.maximum(MAD_TO_SIGMA * median_filter(residual, size=min(15, ew.size), mode="mirror"),
                        1e-3 * float(np.median(sw)))
        result = _fit_band(result.params, ew, yw, sw, cw, center0)
    except ValueError as err:
        raise InputError(f"emission band fit did not converge ({err})") from None
    if result.covar is None or not np.all(np.isfinite(result.covar)):
        raise InputError("emission band fit is undetermined (singular covariance)")
    # The noise is estimated from the spectrum itself, not given: the
    # covariance is scaled by the reduced chi^2 (core.lsq rule).
    chi2 = float(result.redchi)
    index = [_PARAMS.index(name) for name in result.var_names]
    pcov = np.zeros((len(_PARAMS), len(_PARAMS)))
    pcov[np.ix_(index, index)] = result.covar * covariance_scale(chi2, sigma_given=False)
    popt = np.array([result.params[name].value for name in _PARAMS])
    center, fwhm, height, eta, b0, b1 = (float(v) for v in popt)
    b0 += b1 * (center - center0)  # the background under the fitted centre
    shape_area = eta * math.pi / 2.0 + (1.0 - eta) * _GAUSS_AREA
    area = height * fwhm * shape_area
    # d area / d(center, fwhm, height, eta, bg0, bg1)
    grad = np.array([0.0, height * shape_area, fwhm * shape_area,
                     height * fwhm * (math.pi / 2.0 - _GAUSS_AREA), 0.0, 0.0])
    area_err = math.sqrt(max(float(grad @ pcov @ grad), 0.0))
    return EmissionFit(energy_eV=center, energy_err_eV=float(math.sqrt(pcov[0, 0])), fwhm_eV=fwhm,
                   fwhm_err_eV=float(math.sqrt(pcov[1, 1])), area=float(area), area_err=area_err,
                   amplitude=height, eta=eta, background=(b0, b1), window_eV=(float(ew[0]), float(ew[-1])),
                   snr=float(z[k]), reduced_chi2=chi2, profile=profile)

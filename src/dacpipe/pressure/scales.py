"""Pressure scales: a gauge's measured line position to pressure, and back.

Each scale is a :class:`PressureScale` with the formula, its paper, the
inverse (pressure to line position, used by the synthetic-data generator and
by the round-trip tests) and the uncertainty that comes from the published
uncertainty of its coefficients. ``SCALES`` maps the names accepted in the
config (``pressure.scale``) to them; the README has the same table.

Positions are in nm for fluorescence gauges (ruby, Sm:SrB4O7) and in cm^-1
(Raman shift) for the diamond edge. ``x0`` is always the ambient-pressure
position of the same line, ideally measured on the day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Array = float | np.ndarray


@dataclass(frozen=True)
class PressureScale:
    """One published calibration of a pressure gauge.

    Attributes
    ----------
    name : str
        Config name, e.g. ``"mao1986-hydrostatic"``.
    gauge : str
        ``"ruby"``, ``"sm-srb4o7"`` or ``"diamond-raman"``.
    formula : str
        The formula in plain text, as written in the README table.
    reference : str
        The paper.
    x0_default : float
        Ambient position of the line (nm, or cm^-1 for the diamond edge).
    pressure : callable
        ``pressure(x, x0) -> P_GPa``.
    position : callable
        ``position(P_GPa, x0) -> x``, the exact inverse of ``pressure``.
    coefficient_terms : callable or None
        ``coefficient_terms(x, x0) -> {coefficient: dP_GPa}``: the pressure
        change of a 1-sigma change of each coefficient, from the published
        uncertainties (first order), or None where the paper publishes none:
        the scale term is then NaN rather than a made-up number. Each
        coefficient's term moves every point of a run together (a
        systematic error, :func:`dacpipe.eos.fit.propagate_systematic`);
        the coefficients are independent of each other.
    valid_to_GPa : float
        Highest pressure of the data the scale was calibrated on; beyond it
        the formula is extrapolated (the pressure stage says so in the
        point's status).
    """

    name: str
    gauge: str
    formula: str
    reference: str
    x0_default: float
    pressure: Callable[[Array, float], Array]
    position: Callable[[Array, float], Array]
    coefficient_terms: Callable[[Array, float], dict] | None = None
    valid_to_GPa: float = math.inf

    def pressure_GPa(self, x: Array, x0: float | None = None) -> Array:
        """Pressure for a line at ``x`` (ambient position ``x0``)."""
        return self.pressure(x, self.x0_default if x0 is None else x0)

    def position_at(self, pressure_GPa: Array, x0: float | None = None) -> Array:
        """Line position at ``pressure_GPa`` (the inverse of :meth:`pressure_GPa`)."""
        return self.position(pressure_GPa, self.x0_default if x0 is None else x0)

    def slope_GPa_per_unit(self, x: Array, x0: float | None = None) -> Array:
        """dP/dx at ``x``, for propagating the error of a fitted position.

        A central difference with a step of 1e-4 nm (or cm^-1) is exact to
        far better than any fit error, for every smooth formula here.
        """
        h = 1e-4
        return (self.pressure_GPa(np.asarray(x) + h, x0) - self.pressure_GPa(np.asarray(x) - h, x0)) / (2 * h)

    def x0_slope_GPa_per_unit(self, x: Array, x0: float | None = None) -> Array:
        """dP/dx0 at ``x``: how an error of the ambient position moves the
        pressure (the same for every point of a run: a systematic term)."""
        h = 1e-4
        x0 = self.x0_default if x0 is None else x0
        return (self.pressure_GPa(x, x0 + h) - self.pressure_GPa(x, x0 - h)) / (2 * h)

    def scale_sigma_GPa(self, x: Array, x0: float | None = None) -> Array:
        """Pressure uncertainty from the scale's coefficients; NaN if unpublished."""
        if self.coefficient_terms is None:
            return np.full(np.shape(x), np.nan) if np.ndim(x) else math.nan
        terms = self.scale_terms_GPa(x, x0)
        return np.sqrt(sum(np.asarray(t, dtype=float) ** 2 for t in terms.values()))

    def scale_terms_GPa(self, x: Array, x0: float | None = None) -> dict:
        """Coefficient name -> |dP| of its 1-sigma change at ``x`` ({} if unpublished)."""
        if self.coefficient_terms is None:
            return {}
        return {name: np.abs(value) for name, value in
                self.coefficient_terms(x, self.x0_default if x0 is None else x0).items()}


# --- Mao-type scales: P = (A/B) [(x/x0)^B - 1] -----------------------------


def _mao_type(A: float, B: float, sigma_A: float | None = None, sigma_B: float | None = None):
    def pressure(x, x0):
        return A / B * ((np.asarray(x) / x0) ** B - 1.0)

    def position(p, x0):
        return x0 * (1.0 + B * np.asarray(p) / A) ** (1.0 / B)

    if sigma_A is None or sigma_B is None:
        return pressure, position, None

    def sigma(x, x0):
        r = np.asarray(x) / x0
        dP_dA = (r**B - 1.0) / B
        dP_dB = A / B * (r**B * np.log(r)) - A / B**2 * (r**B - 1.0)
        return {"A": dP_dA * sigma_A, "B": dP_dB * sigma_B}

    return pressure, position, sigma


def _linear(slope_GPa_per_nm: float, sigma_slope: float):
    def pressure(x, x0):
        return slope_GPa_per_nm * (np.asarray(x) - x0)

    def position(p, x0):
        return x0 + np.asarray(p) / slope_GPa_per_nm

    def sigma(x, x0):
        return {"slope": (np.asarray(x) - x0) * sigma_slope}

    return pressure, position, sigma


# --- Shen 2020 (Ruby2020): P = A d (1 + B d), d = (x - x0)/x0 --------------


def _quadratic_in_relative_shift(A: float, B: float, sigma_A: float, sigma_B: float):
    def pressure(x, x0):
        d = (np.asarray(x) - x0) / x0
        return A * d * (1.0 + B * d)

    def position(p, x0):
        # A B d^2 + A d - P = 0; the root that is continuous through P = 0.
        p = np.asarray(p, dtype=float)
        d = 2.0 * p / (A * (1.0 + np.sqrt(1.0 + 4.0 * B * p / A)))
        return x0 * (1.0 + d)

    def sigma(x, x0):
        d = (np.asarray(x) - x0) / x0
        return {"A": d * (1.0 + B * d) * sigma_A, "B": A * d**2 * sigma_B}

    return pressure, position, sigma


# --- Datchi 1997 Sm:SrB4O7: P = A dl (1 + B dl) / (1 + C dl) --------------


def _datchi1997(A: float = 4.032, B: float = 9.29e-3, C: float = 2.32e-2):
    """P = A dl (1 + B dl) / (1 + C dl): A in GPa/nm, B and C in 1/nm."""

    def pressure(x, x0):
        dl = np.asarray(x) - x0
        return A * dl * (1.0 + B * dl) / (1.0 + C * dl)

    def position(p, x0):
        # A B dl^2 + (A - P C) dl - P = 0, root continuous through P = 0.
        p = np.asarray(p, dtype=float)
        b = A - p * C
        dl = 2.0 * p / (b + np.sqrt(b * b + 4.0 * A * B * p))
        return x0 + dl

    return pressure, position


# --- Akahama & Kawamura 2006 diamond edge: P = K0 d [1 + (K0' - 1) d / 2] ---


def _akahama2006():
    K0, K0p = 547.0, 3.75  # GPa, dimensionless
    sigma_K0, sigma_K0p = 11.0, 0.20

    def pressure(nu, nu0):
        d = (np.asarray(nu) - nu0) / nu0
        return K0 * d * (1.0 + 0.5 * (K0p - 1.0) * d)

    def position(p, nu0):
        p = np.asarray(p, dtype=float)
        b = 0.5 * (K0p - 1.0)
        d = 2.0 * p / (K0 * (1.0 + np.sqrt(1.0 + 4.0 * b * p / K0)))
        return nu0 * (1.0 + d)

    def sigma(nu, nu0):
        d = (np.asarray(nu) - nu0) / nu0
        return {"K0": d * (1.0 + 0.5 * (K0p - 1.0) * d) * sigma_K0, "Kp": 0.5 * K0 * d**2 * sigma_K0p}

    return pressure, position, sigma


def _scales() -> dict[str, PressureScale]:
    # valid_to_GPa: the top of each paper's calibration data (Piermarini: 19.5
    # GPa; Mao 1986: 80 GPa in argon; Mao 1978: 100 GPa; Dewaele 2008 and
    # Ruby2020: 150 GPa; Datchi 1997: 124 GPa; Akahama & Kawamura 2006: 410 GPa).
    ruby0 = 694.24
    table = [
        PressureScale(
            "piermarini1975", "ruby", "P = 2.740(16) GPa/nm * (R1 - R1_0)",
            "Piermarini, Block, Barnett & Forman, J. Appl. Phys. 46, 2774 (1975): "
            "dR1/dP = 0.365 nm/GPa, linear to 19.5 GPa",
            ruby0, *_linear(1.0 / 0.365, 0.016), valid_to_GPa=19.5),
        PressureScale(
            "mao1986-hydrostatic", "ruby", "P = (A/B)[(R1/R1_0)^B - 1], A = 1904 GPa, B = 7.665",
            "Mao, Xu & Bell, J. Geophys. Res. 91, 4673 (1986), quasi-hydrostatic (argon medium)",
            ruby0, *_mao_type(1904.0, 7.665), valid_to_GPa=80.0),
        PressureScale(
            "mao1986-nonhydrostatic", "ruby", "P = (A/B)[(R1/R1_0)^B - 1], A = 1904 GPa, B = 5",
            "Mao, Bell, Shaner & Steinberg, J. Appl. Phys. 49, 3276 (1978), the B = 5 "
            "non-hydrostatic form quoted with Mao, Xu & Bell (1986)",
            ruby0, *_mao_type(1904.0, 5.0), valid_to_GPa=100.0),
        PressureScale(
            "dewaele2008", "ruby", "P = (A/B)[(R1/R1_0)^B - 1], A = 1920 GPa, B = 9.61",
            "Dewaele, Torrent, Loubeyre & Mezouar, Phys. Rev. B 78, 104102 (2008)",
            ruby0, *_mao_type(1920.0, 9.61), valid_to_GPa=150.0),
        PressureScale(
            "shen2020", "ruby", "P = A d (1 + B d), d = (R1 - R1_0)/R1_0, A = 1870(10) GPa, B = 5.63(3)",
            "Shen et al. (IPPS task group), High Press. Res. 40, 299 (2020), Ruby2020",
            ruby0, *_quadratic_in_relative_shift(1870.0, 5.63, 10.0, 0.03), valid_to_GPa=150.0),
        PressureScale(
            "datchi1997", "sm-srb4o7",
            "P = A dl (1 + B dl)/(1 + C dl), dl = l - l0, A = 4.032 GPa/nm, B = 9.29e-3 /nm, C = 2.32e-2 /nm",
            "Datchi, LeToullec, Loubeyre, LeGodec & Besson, J. Appl. Phys. 81, 3333 (1997), "
            "Sm:SrB4O7 7D0-5F0 line",
            685.41, *_datchi1997(), valid_to_GPa=124.0),
        PressureScale(
            "rashchenko2015", "sm-srb4o7",
            "P = A dl (1 + B dl)/(1 + C dl), dl = l - l0, A = 4.20 GPa/nm, B = 0.020 /nm, C = 0.036 /nm",
            "Rashchenko et al., J. Appl. Phys. 117, 145902 (2015), "
            "Sm:SrB4O7 0-0 line against the Sm:YAG primary calibration, l0 = 685.51 nm",
            685.51, *_datchi1997(4.20, 0.020, 0.036), valid_to_GPa=120.0),
        PressureScale(
            "akahama2006", "diamond-raman",
            "P = K0 d [1 + (K0' - 1) d / 2], d = (nu - nu0)/nu0, K0 = 547(11) GPa, K0' = 3.75(20)",
            "Akahama & Kawamura, J. Appl. Phys. 100, 043516 (2006), high-frequency edge "
            "of the first-order Raman band of the diamond anvil tip",
            1334.0, *_akahama2006(), valid_to_GPa=410.0),
    ]
    return {s.name: s for s in table}


SCALES: dict[str, PressureScale] = _scales()


def get_scale(name: str, gauge: str | None = None) -> PressureScale:
    """The scale called ``name``; if ``gauge`` is given it must match."""
    try:
        scale = SCALES[name]
    except KeyError:
        raise ValueError(f"unknown pressure scale {name!r}; known: {', '.join(SCALES)}") from None
    if gauge is not None and scale.gauge != gauge:
        raise ValueError(f"pressure scale {name!r} is for the {scale.gauge} gauge, not {gauge}")
    return scale


# --- temperature ------------------------------------------------------------

RUBY_REFERENCE_K = 296.0
"""Temperature at which Datchi et al. (2007) put the ruby (and Sm:SrB4O7) shift to zero."""


def ruby_thermal_shift_nm(temperature_K: Array) -> Array:
    """Shift of the ruby R1 line at ambient pressure relative to 296 K, in nm.

    Datchi, Dewaele, Loubeyre, Letoullec, Le Godec & Canny, High Press. Res.
    27, 447 (2007), in its three ranges (dT = T - 296 K):

    * T <= 50 K, eq. 3: ``dl = -0.887`` (the line no longer moves);
    * 50-296 K, eq. 4: ``dl = 6.64e-3 dT + 6.76e-6 dT^2 - 2.33e-8 dT^3``;
    * 296-900 K, eq. 2: ``dl = 7.46e-3 dT - 3.01e-6 dT^2 + 8.76e-9 dT^3``.

    Eq. 4 gives -0.877 nm at 50 K, 0.010 nm off eq. 3: the paper's own
    step, left as published. (The Vos & Schouten 1991 cubic used before
    turns over below ~100 K and is 0.07 nm off at 10 K.)
    """
    t = np.asarray(temperature_K, dtype=float)
    dt = t - RUBY_REFERENCE_K
    high = 7.46e-3 * dt - 3.01e-6 * dt**2 + 8.76e-9 * dt**3
    low = 6.64e-3 * dt + 6.76e-6 * dt**2 - 2.33e-8 * dt**3
    out = np.where(t >= RUBY_REFERENCE_K, high, np.where(t > 50.0, low, -0.887))
    return float(out) if out.ndim == 0 else out


def sm_srb4o7_thermal_shift_nm(temperature_K: Array) -> Array:
    """Shift of the Sm:SrB4O7 0-0 line at ambient pressure relative to 296 K, in nm.

    Above 296 K, Datchi et al., High Press. Res. 27, 447 (2007), as quoted
    with that paper in public ruby/Sm software:
    ``dl = -8.7e-5 dT + 4.62e-6 dT^2 - 2.38e-9 dT^3``, dT = T - 296 K
    (+0.03 nm at 400 K, +0.8 nm at 800 K). The coefficients could not be
    checked against the paper here (unconfirmed). Below 296 K the cubic
    would turn over; the line hardly moves there (Datchi et al., J. Appl.
    Phys. 81, 3333 (1997): about -1e-4 nm/K), so only the linear term is
    kept (+0.025 nm at 10 K, 0.1 GPa).
    """
    t = np.asarray(temperature_K, dtype=float)
    dt = t - RUBY_REFERENCE_K
    cubic = -8.7e-5 * dt + 4.62e-6 * dt**2 - 2.38e-9 * dt**3
    out = np.where(t >= RUBY_REFERENCE_K, cubic, -8.7e-5 * dt)
    return float(out) if out.ndim == 0 else out


THERMAL_SHIFTS: dict[str, Callable[[Array], Array]] = {
    "ruby": ruby_thermal_shift_nm,
    "sm-srb4o7": sm_srb4o7_thermal_shift_nm,
}
"""Gauge -> its line's thermal shift at ambient pressure (nm, relative to 296 K)."""

TEMPERATURE_CORRECTIONS = ("datchi2007", "none")


def temperature_corrected_position(x: Array, temperature_K: Array, reference_K: float,
                                   method: str = "datchi2007", gauge: str = "ruby") -> Array:
    """Line position moved from ``temperature_K`` to ``reference_K``.

    The scales are calibrated at room temperature, and ``x0`` was measured at
    ``reference_K``; removing the thermal shift between the two (of the
    ``gauge``'s line, :data:`THERMAL_SHIFTS`) leaves only the pressure
    shift. The pressure dependence of the thermal shift is neglected, as
    Datchi et al. (2007) recommend below ~100 GPa. Which gauges shift enough
    to need it is the gauge registry's business
    (:data:`dacpipe.pressure.gauges.GAUGES`).
    """
    if method not in TEMPERATURE_CORRECTIONS:
        raise ValueError(f"unknown temperature correction {method!r}; known: {TEMPERATURE_CORRECTIONS}")
    if method == "none":
        return x
    shift = THERMAL_SHIFTS[gauge]
    return np.asarray(x) - (shift(temperature_K) - shift(reference_K))


def thermal_slope_nm_per_K(temperature_K: float, gauge: str = "ruby") -> float:
    """d(shift)/dT of the ``gauge``'s line at ``temperature_K`` (nm/K), for the
    pressure error of an uncertain temperature. A central difference of
    +-0.5 K; 0 on ruby's flat part below 50 K."""
    shift = THERMAL_SHIFTS[gauge]
    return float(shift(temperature_K + 0.5) - shift(temperature_K - 0.5))

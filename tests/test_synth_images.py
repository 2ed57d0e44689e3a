"""The 2D images of data-sample against the truth they were made from.

These tests read the committed files with fabio and integrate them with
pyFAI alone, as a user would, so they check the data (and the truth written
beside it), not the pipeline's integration stage.
"""

from __future__ import annotations

import math
from pathlib import Path

import fabio
import numpy as np
import pyFAI
import pytest
from scipy.optimize import curve_fit
from scipy.signal import find_peaks

from dacpipe.synth import read_truth, saxs, xrd

ROOT = Path(__file__).resolve().parents[1]
HGTE = ROOT / "data-sample" / "hgte_thz"
NC = ROOT / "data-sample" / "nc_saxs"
POLARIZATION = 0.99  # the generator's beam: horizontally polarized synchrotron light


def _sheet_column(folder: Path, column: str) -> list[str]:
    lines = [line.split("\t") for line in (folder / "points.tsv").read_text().splitlines() if line]
    j = lines[0].index(column)
    return [row[j] for row in lines[1:]]


@pytest.fixture(scope="module")
def hgte():
    truth = read_truth(HGTE / "truth.tsv")
    images = [fabio.open(str(HGTE / name)).data for name in _sheet_column(HGTE, "xrd")]
    return {"truth": truth, "spots": read_truth(HGTE / "truth_spots.tsv"), "images": images,
            "ai": pyFAI.load(str(HGTE / "xrd.poni")), "mask": fabio.open(str(HGTE / "xrd.mask")).data != 0}


def _integrate(ai, image, mask, npt=1000):
    """Plain azimuthal average (pixel splitting, no outlier rejection)."""
    return ai.integrate1d(image, npt, unit="2th_deg", mask=mask, dummy=-1, delta_dummy=0.5,
                          polarization_factor=POLARIZATION, error_model="poisson", method=("bbox", "csr", "cython"))


CLIP_RANGE_DEG = (2.0, 18.0)  # from outside the beamstop to the last full bins in the corners
CLIP_NPT = 400  # bins of ~0.04 deg: ~0.4 pixel, and a hundred pixel centres or more per bin


def _clipped(ai, image, mask):
    """Sigma-clipped average (no pixel splitting): each bin's outliers, the diamond spots, rejected.

    The spread is measured over the ring (``error_model="azimuthal"``). With
    ``"poisson"`` pyFAI takes sqrt(mean) as the spread: a spot drags the
    mean of its bin far above the ring, every ordinary pixel then lies more
    than ``thres`` such sigmas below it and is rejected, and the bin keeps
    only the spot (seen with pyFAI 2026.9).
    """
    res = ai.sigma_clip_ng(image, CLIP_NPT, unit="2th_deg", mask=mask, dummy=-1, delta_dummy=0.5,
                           polarization_factor=POLARIZATION, error_model="azimuthal", thres=4, max_iter=5,
                           radial_range=CLIP_RANGE_DEG)
    keep = res.count > 0  # without pixel splitting a bin can catch no pixel centre
    return res.radial[keep], res.intensity[keep], res.sem[keep], keep


def _truth_average(ai, pressure_GPa, mask):
    """The truth pattern averaged as the clipped integration averages a frame.

    The frames sample ``hgte_pattern`` at pixel centres (calcfrom1d) and an
    unsplit bin averages the pixel centres that fall in it, which on the
    flank of a 0.3 deg wide line differs by several % from the profile at the
    bin centre. Integrating the noise-free image the same way removes that.
    """
    grid = np.arange(0.0, 20.0, 0.001)
    image = ai.calcfrom1d(grid, xrd.hgte_pattern(grid, pressure_GPa), shape=mask.shape, dim1_unit="2th_deg",
                          correctSolidAngle=True, polarization_factor=POLARIZATION)
    res = ai.integrate1d(image, CLIP_NPT, unit="2th_deg", mask=mask, polarization_factor=POLARIZATION,
                         method=("no", "histogram", "cython"), radial_range=CLIP_RANGE_DEG)
    return res.radial, res.intensity


# ---------------------------------------------------------------- the frames


def test_frames_are_pilatus_like(hgte):
    """Detector shape, int32 counts, the module gap at -1 and nowhere else."""
    gap = np.zeros(xrd.XRD_GEOMETRY.shape, dtype=bool)
    gap[xrd.GAP_ROWS[0]:xrd.GAP_ROWS[1]] = True
    assert len(hgte["images"]) == len(hgte["truth"]["point"]) == 14
    for image in hgte["images"]:
        assert image.shape == xrd.XRD_GEOMETRY.shape == hgte["ai"].detector.max_shape
        assert image.dtype == np.int32
        assert np.all(image[gap] == -1)
        assert np.all(image[~gap] >= 0)


def test_poni_is_the_generator_geometry(hgte):
    ai, g = hgte["ai"], xrd.XRD_GEOMETRY
    assert (ai.dist, ai.poni1, ai.poni2, ai.rot1, ai.rot2, ai.rot3) == (
        g.distance_m, g.poni1_m, g.poni2_m, g.rot1_rad, g.rot2_rad, g.rot3_rad)
    assert ai.wavelength == pytest.approx(g.wavelength_A * 1e-10, rel=1e-12)
    assert ai.detector.pixel1 == ai.detector.pixel2 == g.pixel_m
    # 2theta reaches ~18 deg in the corners: the zinc-blende 422 line at ambient
    assert 17.5 < ai.center_array(g.shape, unit="2th_deg", scale=True).max() < 20.0


def test_beamstop_is_masked(hgte):
    """The mask covers the beamstop shadow (disc and arm), whose counts are a few % of the surroundings."""
    mask, ai = hgte["mask"], hgte["ai"]
    shadow = xrd.beamstop_shadow()
    assert mask.shape == xrd.XRD_GEOMETRY.shape
    assert np.all(mask[shadow])
    fit2d = ai.getFit2D()  # the direct beam, from the PONI alone
    assert mask[int(round(fit2d["centerY"] - 0.5)), int(round(fit2d["centerX"] - 0.5))]
    assert 0.02 < mask.mean() < 0.10  # a beamstop, not half the detector
    # the shadow really is dark: compare with the unmasked pixels at the same 2theta
    tth = ai.center_array(mask.shape, unit="2th_deg", scale=True)
    for image in hgte["images"]:
        arm = shadow & (tth > 3.0) & (tth < 10.0)
        beside = ~mask & (image >= 0) & (tth > 3.0) & (tth < 10.0)
        assert np.median(image[arm]) < 0.05 * np.median(image[beside])


def test_diamond_spots_are_where_the_truth_says(hgte):
    """Every listed spot is a bright compact peak at its position, 10x and more above the rings."""
    spots, truth = hgte["spots"], hgte["truth"]
    counts_per_point = [np.sum(spots["point"] == p) for p in truth["point"]]
    assert all(3 <= n <= 8 for n in counts_per_point)
    # the generator's promise: 20-100 times the brightest ring within 1 deg
    assert np.all(spots["peak_counts"] >= 20 * spots["ring_counts"])
    assert np.all(spots["peak_counts"] <= 100 * spots["ring_counts"] + 1)
    for point, row, col, peak, ring in zip(spots["point"], spots["row"], spots["col"], spots["peak_counts"],
                                           spots["ring_counts"]):
        image = hgte["images"][list(truth["point"]).index(point)].astype(float)
        r, c = int(round(row)), int(round(col))
        window = image[r - 3:r + 4, c - 3:c + 4]
        # a pixel centre is at most 0.71 px from the spot centre; sigma >= 1 px
        assert window.max() >= 10 * ring
        assert window.max() == image[r - 1:r + 2, c - 1:c + 2].max()
        # the centroid of the spot above the local level is its truth position
        w = np.clip(window - np.median(window), 0, None)
        rows, cols = np.mgrid[r - 3:r + 4, c - 3:c + 4]
        assert abs((w * rows).sum() / w.sum() - row) < 0.15
        assert abs((w * cols).sum() / w.sum() - col) < 0.15


# ---------------------------------------------------------------- integration


def _pseudo_voigt_on_line(x, center, height, fwhm, eta, b0, b1):
    u = (x - center) / fwhm
    return height * (eta / (1 + 4 * u * u) + (1 - eta) * np.exp(-4 * math.log(2) * u * u)) + b0 + b1 * (x - center)


def test_zinc_blende_lines_where_the_truth_lattice_puts_them(hgte):
    """First point: the 111 and 220 lines of the integrated frame within 0.01 deg of the truth cell."""
    ai, truth = hgte["ai"], hgte["truth"]
    a = truth["HgTe-zb/a_A"][0]
    wavelength_A = ai.wavelength * 1e10
    res = _integrate(ai, hgte["images"][0], hgte["mask"])
    for hkl in ((1, 1, 1), (2, 2, 0)):
        expected = 2 * math.degrees(math.asin(wavelength_A * math.sqrt(sum(h * h for h in hkl)) / (2 * a)))
        near = np.abs(res.radial - expected) < 0.35  # ~ +- 1 FWHM of the 9 nm crystallites
        x, y = res.radial[near], res.intensity[near]
        p, _ = curve_fit(_pseudo_voigt_on_line, x, y, p0=[x[np.argmax(y)], y.max() - y.min(), 0.3, 0.5, y.min(), 0.0])
        assert abs(p[0] - expected) < 0.01, (hkl, p[0], expected)


def test_sigma_clipping_recovers_the_pattern(hgte):
    """With the spots rejected, every frame's average is the truth pattern within its counting noise.

    chi^2 per bin over ~370 bins has a spread of sqrt(2/370) = 0.07 around 1;
    1.3 leaves room for the few % of ring pixels that 4-sigma clipping takes
    off a Poisson distribution and for pyFAI's variance estimate.
    """
    ai, truth = hgte["ai"], hgte["truth"]
    for i, image in enumerate(hgte["images"]):
        tth, intensity, sem, keep = _clipped(ai, image, hgte["mask"])
        radial, model = _truth_average(ai, truth["pressure_GPa"][i], hgte["mask"] | (image < 0))
        np.testing.assert_allclose(tth, radial[keep])
        z = (intensity - model[keep]) / sem
        assert np.mean(z**2) < 1.3, (truth["point"][i], np.mean(z**2))
        assert np.max(np.abs(z)) < 5.0


def test_diamond_spot_makes_a_spurious_peak_that_clipping_removes(hgte):
    """The spot lying farthest from any ring makes a peak of the plain average, and not of the clipped one."""
    spots, truth = hgte["spots"], hgte["truth"]
    k = int(np.argmin(spots["local_counts"] / spots["ring_counts"]))
    point, tth_spot = spots["point"][k], spots["two_theta_deg"][k]
    i = list(truth["point"]).index(point)
    pressure = truth["pressure_GPa"][i]
    # the truth pattern has no line there: it is flat within +-0.1 deg
    around = np.linspace(tth_spot - 0.1, tth_spot + 0.1, 41)
    level = xrd.hgte_pattern(around, pressure)
    assert level.max() - level.min() < 0.1 * level.mean()

    plain = _integrate(hgte["ai"], hgte["images"][i], hgte["mask"])
    j = int(np.argmin(np.abs(plain.radial - tth_spot)))
    excess = plain.intensity[j] - xrd.hgte_pattern(plain.radial[j], pressure)
    assert excess > 0.5 * level.mean() and excess > 20 * plain.sigma[j]
    # ... and it is a peak: the highest point of the plain pattern within +-0.3 deg
    window = np.abs(plain.radial - tth_spot) < 0.3
    assert abs(plain.radial[window][np.argmax(plain.intensity[window])] - tth_spot) < 0.1

    image = hgte["images"][i]
    tth, intensity, sem, keep = _clipped(hgte["ai"], image, hgte["mask"])
    _, model = _truth_average(hgte["ai"], pressure, hgte["mask"] | (image < 0))
    near = np.abs(tth - tth_spot) < 0.3
    assert np.all(np.abs(intensity[near] - model[keep][near]) < 4 * sem[near])


# ---------------------------------------------------------------- SAXS


@pytest.fixture(scope="module")
def nc():
    def read(name):
        return fabio.open(str(NC / name)).data

    return {"truth": read_truth(NC / "truth.tsv"), "images": [read(n) for n in _sheet_column(NC, "saxs")],
            "ai": pyFAI.load(str(NC / "saxs.poni")), "mask": read("saxs.mask") != 0,
            "dark": read("saxs_dark.edf").astype(float), "flat": read("saxs_flat.edf").astype(float)}


def _peak_on_sloping_level(q, b0, b1, height, center, sigma):
    # a Gaussian peak of S(q) multiplied by the locally exponential form factor
    return np.exp(b0 + b1 * (q - center)) * (1 + height * np.exp(-0.5 * ((q - center) / sigma) ** 2))


def test_saxs_first_peak_is_the_111_of_the_truth_lattice(nc):
    """Dark- and flat-corrected frames: the first superlattice peak at q = 2 pi sqrt(3) / a within 1 %.

    1 % is what an analysis that only locates the first peak can promise:
    the 200 peak 15 % higher in q overlaps its flank at the higher
    pressures, where the domains are smallest.
    """
    ai, truth = nc["ai"], nc["truth"]
    for i, image in enumerate(nc["images"]):
        res = ai.integrate1d(image, 300, unit="q_nm^-1", mask=nc["mask"], dark=nc["dark"], flat=nc["flat"],
                             polarization_factor=POLARIZATION, error_model="poisson")
        q, intensity = res.radial, res.intensity
        peaks, _ = find_peaks(intensity, prominence=20 * np.median(res.sigma))
        q0 = q[peaks[0]]
        near = np.abs(q - q0) < 0.07
        p, _ = curve_fit(_peak_on_sloping_level, q[near], intensity[near],
                         p0=[math.log(intensity[near].min()), -3.0, 2.0, q0, 0.03], sigma=res.sigma[near])
        a_nm = truth["a_nm"][i]
        assert truth["q111_inv_nm"][i] == pytest.approx(2 * math.pi * math.sqrt(3) / a_nm, rel=1e-6)
        assert p[3] == pytest.approx(2 * math.pi * math.sqrt(3) / a_nm, rel=0.01)


def test_saxs_dark_correction_recovers_the_background(nc):
    """At high q the profile is background (~5 counts): only with the dark subtracted does it match the truth."""
    ai, truth = nc["ai"], nc["truth"]
    image = nc["images"][0]
    common = dict(unit="q_nm^-1", mask=nc["mask"], polarization_factor=POLARIZATION, error_model="poisson")
    corrected = ai.integrate1d(image, 300, dark=nc["dark"], flat=nc["flat"], **common)
    raw = ai.integrate1d(image, 300, **common)
    high = corrected.radial > 2.5
    model = saxs.saxs_profile(corrected.radial[high], truth["pressure_GPa"][0])
    # mean over ~100 bins of a few thousand pixels each: the noise on the mean is ~0.05 counts
    assert abs(np.mean(corrected.intensity[high] - model)) < 0.5
    assert np.mean(raw.intensity[high] - model) == pytest.approx(saxs.DARK_OFFSET_COUNTS, abs=0.5)

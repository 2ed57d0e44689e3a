"""The integration stage on frames made here from a known 1D pattern."""

import hashlib
import logging
import os
import sys

import fabio
import h5py
import numpy as np
import pytest
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from dacpipe.io.config import validate_config
from dacpipe.integration.stage import run as integrate
from conftest import stage_context
from dacpipe.core.units import q_from_two_theta, two_theta_from_q
from dacpipe.io.sheet import read_sheet
from dacpipe.run.store import write_part

SHAPE = (200, 220)
WAVELENGTH_A = 0.4
PEAKS_DEG = (4.0, 7.0, 10.0)


def integrate_kind(sheet, section, kind="xrd", warn=None):
    """The integration stage of ``kind`` on ``sheet`` with the ``section`` settings."""
    return integrate(stage_context(kind, sheet, {kind: section}, warn=warn))


def integrator():
    detector = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=SHAPE)
    return AzimuthalIntegrator(dist=0.12, poni1=0.0172 * 0.93, poni2=0.0172 * 1.07, detector=detector,
                               wavelength=WAVELENGTH_A * 1e-10)


def truth_pattern(tth):
    return 50.0 + sum(1000.0 * np.exp(-0.5 * ((tth - c) / 0.08) ** 2) for c in PEAKS_DEG)


def frame(ai, rng, spot=None):
    tth = np.linspace(0.0, 15.0, 5000)
    image = ai.calcfrom1d(tth, truth_pattern(tth), shape=SHAPE, dim1_unit="2th_deg",
                          correctSolidAngle=True, polarization_factor=0.99)
    image = rng.poisson(np.clip(image, 0, None)).astype(np.int32)
    if spot is not None:  # a diamond single-crystal spot sitting on the second ring
        rr, cc = np.mgrid[:SHAPE[0], :SHAPE[1]]
        image += (80000 * np.exp(-((rr - spot[0]) ** 2 + (cc - spot[1]) ** 2) / 2.0)).astype(np.int32)
    image[100:104, :] = -1  # a module gap, Pilatus style
    return image


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path)


def make_run(tmp_path):
    ai = integrator()
    ai.save(str(tmp_path / "geo.poni"))
    rng = np.random.default_rng(1)
    # A pixel on the 7 deg ring, for the spot.
    tth_map = ai.center_array(SHAPE, unit="2th_deg")
    r, c = np.unravel_index(np.argmin(np.abs(tth_map - 7.0)), SHAPE)
    fabio.cbfimage.CbfImage(data=frame(ai, rng)).write(str(tmp_path / "f1.cbf"))
    fabio.cbfimage.CbfImage(data=frame(ai, rng, spot=(r, c))).write(str(tmp_path / "f2.cbf"))
    good = (tmp_path / "f1.cbf").read_bytes()
    (tmp_path / "f3.cbf").write_bytes(good[: len(good) // 2])            # truncated
    fabio.cbfimage.CbfImage(data=np.zeros((50, 50), np.int32)).write(str(tmp_path / "f4.cbf"))  # wrong detector
    (tmp_path / "points.tsv").write_text("point\txrd\na\tf1.cbf\nb\tf2.cbf\nc\tf3.cbf\nd\tf4.cbf\ne\t\n"
                                         "f\tmissing.cbf\n")
    return tmp_path


def section(tmp_path, **changes):
    config = {"runs": {"r": {"sheet": "x", "xrd": {"poni": str(tmp_path / "geo.poni"), "unit": "2th_deg",
                                                    "npt": 300, **changes}}}}
    return validate_config(config)["runs"]["r"]["xrd"]


def peak_centre(x, y, near):
    window = (x > near - 0.4) & (x < near + 0.4)
    xs, ys = x[window], y[window] - np.nanmin(y[window])
    return float(np.sum(xs * ys) / np.sum(ys))


def test_patterns_statuses_and_axes(run):
    messages = []
    result = integrate_kind(read_sheet(run / "points.tsv"), section(run), "xrd", warn=messages.append)
    status = dict(zip(result.point_ids, result.status))
    assert status["a"] == "ok" and status["b"] == "ok"
    assert "truncated" in status["c"] or "f3.cbf" in status["c"]
    assert "f4.cbf" in status["d"] and "50" in status["d"]
    assert status["e"] == "xrd: not measured"
    assert "missing.cbf" in status["f"] and "not found" in status["f"]
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    tth, pattern = result.axes["two_theta"], result.datasets["I"][0]
    for centre in PEAKS_DEG:
        # Solid angle and polarization are corrected, so the rings sit where the 1D truth put them.
        assert peak_centre(tth, pattern, centre) == pytest.approx(centre, abs=0.01)
    assert np.all(np.isnan(result.datasets["I"][2:]))
    np.testing.assert_allclose(result.axes["q"], q_from_two_theta(tth, WAVELENGTH_A))
    np.testing.assert_allclose(two_theta_from_q(result.axes["q"], WAVELENGTH_A), tth)
    # Gap pixels (-1) are masked: the flat background level is the truth's 50 counts
    # divided by nothing (solid angle normalised to the PONI pixel).
    # The default spot rejection masks spots and integrates whole pixels (each bin the mean of its pixels).
    assert result.attrs["method"] == "('no', 'csr', 'cython')" and result.attrs["rejection"] == "spots"


def test_diamond_spot_rejection(run):
    sheet = read_sheet(run / "points.tsv")
    spots = integrate_kind(sheet, section(run), "xrd")
    clipped = integrate_kind(sheet, section(run, rejection={"method": "sigma-clip"}), "xrd")
    plain = integrate_kind(sheet, section(run, rejection={"method": "none"}), "xrd")
    median = integrate_kind(sheet, section(run, rejection={"method": "median"}), "xrd")
    tth = clipped.axes["two_theta"]
    ring = np.abs(tth - 7.0) < 0.3
    # Frame a has no spot, frame b the same rings plus a spot on the 7 deg ring.
    excess_plain = np.nanmax(plain.datasets["I"][1][ring] - plain.datasets["I"][0][ring])
    excess_spots = np.nanmax(np.abs(spots.datasets["I"][1][ring] - spots.datasets["I"][0][ring]))
    excess_clipped = np.nanmax(np.abs(clipped.datasets["I"][1][ring] - clipped.datasets["I"][0][ring]))
    excess_median = np.nanmax(np.abs(median.datasets["I"][1][ring] - median.datasets["I"][0][ring]))
    peak = np.nanmax(clipped.datasets["I"][0][ring])
    assert excess_plain > 0.2 * peak          # without rejection the spot inflates the ring
    assert excess_spots < 0.05 * peak         # the spot search masks it (the default)
    assert excess_clipped < 0.05 * peak       # sigma clipping removes it
    assert excess_median < 0.05 * peak
    # The spot search masked the spot in frame b and nothing in frame a, where
    # the pattern is the plain one. The spot (80000 exp(-r^2/2) on a ~1000-count
    # ring) stays above 5 Poisson sigmas (~160 counts) out to r = 3.5 px,
    # grown by 2 px: a disc of ~95 pixels.
    np.testing.assert_array_equal(spots.datasets["spot_pixels"][:2] > 0, [False, True])
    assert 70 <= spots.datasets["spot_pixels"][1] <= 140 and spots.datasets["spot_blobs"][1] == 1
    assert np.all(np.isnan(spots.datasets["spot_pixels"][2:]))
    # (plain: integrated whole pixels, as the spot search does)
    unsplit = integrate_kind(sheet, section(run, rejection={"method": "none"}, method=["no", "csr", "cython"]),
                             "xrd")
    np.testing.assert_array_equal(spots.datasets["I"][0], unsplit.datasets["I"][0])
    np.testing.assert_array_equal(spots.datasets["I_errors"][0], unsplit.datasets["I_errors"][0])
    assert "spot_pixels" not in plain.datasets and "spot_pixels" not in clipped.datasets
    # Clipping measures the spread along the ring, but the errors reported are
    # still Poisson: those of plain integration without pixel splitting (as
    # clipping does), where nothing was clipped.
    ratio = clipped.datasets["I_errors"][0][ring] / unsplit.datasets["I_errors"][0][ring]
    assert np.nanmedian(ratio) == pytest.approx(1.0, abs=0.1)


def test_fallback_is_reported(run, caplog):
    with caplog.at_level(logging.WARNING, logger="dacpipe"):
        result = integrate_kind(read_sheet(run / "points.tsv"),
                                   section(run, method=["bbox", "csr", "opencl"], rejection={"method": "none"}),
                                   "xrd")
    assert "pyFAI used method" in caplog.text
    assert "opencl" not in result.attrs["method"]


def test_store_layout(run, tmp_path):
    result = integrate_kind(read_sheet(run / "points.tsv"), section(run), "xrd")
    write_part(tmp_path / "part.h5", "r", result)
    with h5py.File(tmp_path / "part.h5") as h5:
        xrd = h5["r/xrd"]
        assert xrd.attrs["signal"] == "I" and list(xrd.attrs["axes"]) == [".", "q"]
        assert xrd["I"].shape == (6, 300) and xrd["q"].attrs["units"] == "1/angstrom"
        assert xrd["two_theta"].attrs["units"] == "degree"


def test_monitor_normalization_and_cake(run):
    sheet_path = run / "points_monitor.tsv"
    sheet_path.write_text("point\txrd\tmonitor\na\tf1.cbf\t1000\nb\tf1.cbf\t2000\nc\tf1.cbf\t\n")
    plain = integrate_kind(read_sheet(sheet_path), section(run), "xrd")
    messages = []
    normalized = integrate_kind(read_sheet(sheet_path),
                                   section(run, normalization="monitor", cake={"enabled": True, "npt_azimuthal": 36}),
                                   "xrd", warn=messages.append)
    # The same frame counted with twice the monitor is half as intense.
    np.testing.assert_allclose(normalized.datasets["I"][0] * 1000, plain.datasets["I"][0], rtol=1e-4)
    np.testing.assert_allclose(normalized.datasets["I"][1] * 2000, plain.datasets["I"][1], rtol=1e-4)
    assert "monitor" in normalized.status[2] and len(messages) == 1
    cake = normalized.datasets["cake/I"]
    assert cake.shape == (3, 36, 300) and normalized.axes["cake/chi_deg"].shape == (36,)
    # Along the 7 deg ring the cake is flat within noise: no texture in these frames.
    ring = np.argmin(np.abs(normalized.axes["cake/radial"] - 7.0))
    values = cake[0, :, ring][np.isfinite(cake[0, :, ring]) & (cake[0, :, ring] > 0)]
    assert np.std(values) / np.mean(values) < 0.1


@pytest.mark.parametrize("rejection", ["spots", "sigma-clip", "none"])
def test_cake_rings_sit_where_the_patterns_do(run, rejection):
    """The cake is stored on the pattern's radial axis, so it must be integrated on its bins: left
    to itself pyFAI spans the 2D bins over the unmasked pixels, and the rings of the cake sat up to
    a bin off (Au 111 of a radial run 0.011 1/A high, d_P 0.4 % low in the strain analysis; here
    0.53 bin with spot rejection or clipping). The mean of the cake's rows weighs each azimuth
    alike, the pattern each pixel: on the 10 deg ring, cut by the detector's edge, they differ by
    0.09 bin, on whole rings by < 0.01."""
    result = integrate_kind(read_sheet(run / "points.tsv"),
                            section(run, rejection={"method": rejection}, cake={"enabled": True, "npt_azimuthal": 36}))
    radial = result.axes["cake/radial"]
    step = radial[1] - radial[0]
    cake_mean = np.nanmean(np.where(result.datasets["cake/I"][0] > 0, result.datasets["cake/I"][0], np.nan), axis=0)
    for centre in PEAKS_DEG:
        assert peak_centre(radial, cake_mean, centre) == pytest.approx(
            peak_centre(radial, result.datasets["I"][0], centre), abs=0.15 * step)


def test_frame_with_no_usable_pixel(run):
    fabio.cbfimage.CbfImage(data=np.full(SHAPE, -1, np.int32)).write(str(run / "dead.cbf"))
    (run / "dead.tsv").write_text("point\txrd\na\tdead.cbf\nb\tf1.cbf\n")
    result = integrate_kind(read_sheet(run / "dead.tsv"), section(run), "xrd")
    assert "no usable pixel" in result.status[0] and result.status[1] == "ok"


# --- one read per frame -------------------------------------------------------------------

_OPENED: list[str] | None = None  # paths opened while a test records them


def _record_opens(event, args):
    # Python raises the "open" audit event for builtins.open, io.open, os.open
    # and io.FileIO (which fabio uses): every way Python code opens a file.
    if event == "open" and _OPENED is not None and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)  # cannot be removed; records nothing outside the test below


def _bytes_read() -> int | None:
    """Bytes this process has read through read() calls (Linux), or None."""
    try:
        with open("/proc/self/io") as stream:
            return int(next(line for line in stream if line.startswith("rchar:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None


def test_each_cbf_frame_is_read_once(run):
    # The binary-section check, the size/MD5 check, fabio's decoding and the
    # provenance checksum all work on the bytes of one read.
    global _OPENED
    (run / "two.tsv").write_text("point\txrd\na\tf1.cbf\nb\tf2.cbf\n")
    sheet = read_sheet(run / "two.tsv")
    settings = section(run)
    integrate_kind(sheet, settings)  # warm-up: imports and caches are not the stage's reads
    frames = [str(run / "f1.cbf"), str(run / "f2.cbf")]
    before = _bytes_read()
    _OPENED = []
    try:
        result = integrate_kind(sheet, settings)
        opened = list(_OPENED)
    finally:
        _OPENED = None
    read = None if before is None else _bytes_read() - before
    assert result.status == ["ok", "ok"]
    assert [p for p in opened if os.path.abspath(p) in map(os.path.abspath, frames)] == frames
    records = {r.path: r for r in result.inputs if not isinstance(r, str)}
    for frame in frames:  # checksummed from the bytes decoded: those of the file
        content = open(frame, "rb").read()
        assert records[frame].sha256 == hashlib.sha256(content).hexdigest()
        assert records[frame].size == len(content)
    if read is not None:
        # Every byte read by the process, C libraries included (h5py's
        # signature check, say): the two frames once, plus the PONI file
        # (read twice, by pyFAI and by the check) and a few small files;
        # reading a frame twice would add ~50 kB.
        frame_bytes = sum(os.path.getsize(f) for f in frames)
        other = 2 * os.path.getsize(run / "geo.poni") + 16384
        assert frame_bytes <= read <= frame_bytes + other, (read, frame_bytes)


def test_pixel_mean_positions_are_on_the_patterns_bins(tmp_path):
    """Where each bin samples the pattern (``pixel_mean_q_A``) is measured on
    the bins the frames are integrated on, also when the first frame flags
    the pixels that set the radial range (a dead corner here): every bin's
    mean pixel position lies inside it, within half a bin of its centre.
    Masking those pixels instead moves pyFAI's radial range and every bin with
    it (measured on the real CeO2 Pilatus image, whose gaps are -1: 1.2 bins
    off, 2.7 at most), and rebuilds the sparse matrix twice; the frames'
    sparse matrix is kept."""
    from dacpipe.integration.integrator import FrameIntegrator, IntegrationSettings

    ai = integrator()
    ai.save(str(tmp_path / "geo.poni"))
    raw = frame(ai, np.random.default_rng(3)).astype(np.float32)
    raw[-40:, -40:] = -1  # the corner farthest from the PONI: the largest angles
    fi = FrameIntegrator(IntegrationSettings.from_config(section(tmp_path)))
    pattern = fi.integrate(raw)
    engines = {key: engine.engine for key, engine in fi.geometry.integrator.engines.items()}
    positions = fi.pixel_mean_radial(raw)
    assert {key: engine.engine for key, engine in fi.geometry.integrator.engines.items()} == engines
    np.testing.assert_array_equal(fi.integrate(raw).intensity, pattern.intensity)
    width = float(np.mean(np.diff(pattern.radial)))
    inside = np.isfinite(positions)
    assert inside.sum() > 0.9 * positions.size
    assert np.max(np.abs(positions[inside] - pattern.radial[inside])) <= 0.5 * width * (1 + 1e-6)


def test_spots_leave_the_frame_unchanged(tmp_path):
    """The spots are pyFAI's dummy value only while the frame is integrated:
    the caller's array comes back as it was, and a read-only frame integrates
    to the same pattern."""
    from dacpipe.integration.integrator import FrameIntegrator, IntegrationSettings

    ai = integrator()
    ai.save(str(tmp_path / "geo.poni"))
    tth_map = ai.center_array(SHAPE, unit="2th_deg")
    r, c = np.unravel_index(np.argmin(np.abs(tth_map - 7.0)), SHAPE)
    raw = frame(ai, np.random.default_rng(4), spot=(r, c)).astype(np.float32)
    kept = raw.copy()
    fi = FrameIntegrator(IntegrationSettings.from_config(section(tmp_path)))
    pattern = fi.integrate(raw)
    assert pattern.spot_blobs == 1 and pattern.spot_pixels > 0
    np.testing.assert_array_equal(raw, kept)
    kept.flags.writeable = False
    np.testing.assert_array_equal(fi.integrate(kept).intensity, pattern.intensity)

"""The runs of ``data-sample/``: gauge spectra and images composed into sheets and truth.

Each run folder gets a sample sheet (``points.tsv``, contract columns only)
and ``truth.tsv``, whose first columns are always the ruby truth (point,
pressure_before_GPa, pressure_after_GPa, temperature_K) followed by what the
images were made from.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.units import HC_EV_NM
from ..pressure.scales import get_scale
from . import optical, powder, saxs, xrd
from .detector import DetectorGeometry, write_cbf
from .ruby import RubyPoint, ruby_spectrum, write_ruby_series, write_spectrum

TEMPERATURE_K = 298.0
RUBY_SCALE = "mao1986-hydrostatic"
RUBY_LAMBDA0_NM = 694.24

# The HgTe nanocrystal series: compression in uneven steps, as at a beamline,
# through zinc blende, cinnabar and rock salt (xrd.TRANSITIONS).
# Counts per pixel of the strongest CdSe line at the first point of cdse_nc.
CDSE_COUNTS_PER_PIXEL = 1500.0
HGTE_PRESSURES_GPA = (0.15, 0.6, 1.1, 1.6, 2.1, 2.7, 3.4, 4.2, 5.1, 6.2, 7.4, 8.7, 10.1, 11.6)


def _fmt(value: float, digits: int = 6) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _write_tsv(path: Path, header: list[str], rows: list[list[str]], comments: list[str] = ()) -> None:
    lines = [f"# {c}" for c in comments] + ["\t".join(header)] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def _ruby_truth(r: RubyPoint) -> list[str]:
    after = r.pressure_after_GPa if "after" in r.files else math.nan
    return [r.point, _fmt(r.pressure_before_GPa), _fmt(after), f"{TEMPERATURE_K:g}"]


def _frame_rng(seed: int, run: int, frame: int) -> np.random.Generator:
    """An independent stream per frame.

    Poisson sampling uses a variable number of uniform draws, so any change
    in one frame's expected counts would reshuffle every later frame drawn
    from a shared stream; with one stream per frame it stays in that frame.
    """
    return np.random.default_rng([seed, run, frame])


def write_hgte_thz(folder: Path, seed: int) -> None:
    """The ``hgte_thz`` run: ruby before/after, one XRD frame, an absorption
    and a PL spectrum per point.

    The ruby spectra draw from ``default_rng(seed)`` exactly what they drew
    before the run had images, and the images from their own streams, so
    neither changed when later stages added their data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ruby = write_ruby_series(folder, "hgte", HGTE_PRESSURES_GPA, np.random.default_rng(seed),
                             lost=frozenset({("p006", "after")}), scale_name=RUBY_SCALE, lambda0_nm=RUBY_LAMBDA0_NM)
    (folder / "xrd").mkdir(exist_ok=True)
    xrd.write_xrd_geometry(folder)

    sheet, truth, spots = [], [], []
    phase_columns = list(xrd.phase_truth(0.0))
    optical_files, optical_truth = optical.write_optical_series(
        folder, [r.point for r in ruby], [r.exposure_pressure_GPa for r in ruby], np.random.default_rng([seed, 3]))
    for i, r in enumerate(ruby, start=1):
        pressure = r.exposure_pressure_GPa
        counts, frame_spots, _ = xrd.xrd_frame(pressure, _frame_rng(seed, 1, i))
        image = f"xrd/hgte_{r.point}.cbf"
        write_cbf(folder / image, counts)
        sheet.append([r.point, image, r.files["before"], r.files.get("after", ""), optical_files[r.point]["absorption"],
                      optical_files[r.point]["pl"], f"{TEMPERATURE_K:g}", f"step {i}"])
        phases = xrd.phase_truth(pressure)
        light = optical_truth[r.point]
        truth.append(_ruby_truth(r) + [_fmt(pressure)] + [_fmt(phases[c]) for c in phase_columns]
                     + [_fmt(light["band_gap_eV"]), _fmt(light["pl_energy_eV"]), light["optical_phase"]])
        spots += [[r.point, f"{s.row:.3f}", f"{s.col:.3f}", f"{s.sigma_px:.3f}", f"{s.peak_counts:.0f}",
                   _fmt(s.two_theta_deg), f"{s.local_counts:.3f}", f"{s.ring_counts:.3f}"] for s in frame_spots]

    _write_tsv(folder / "points.tsv",
               ["point", "xrd", "ruby_before", "ruby_after", "absorption", "pl", "temperature_K", "note"], sheet)
    g = xrd.XRD_GEOMETRY
    _write_tsv(
        folder / "truth.tsv",
        ["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K", "pressure_GPa", *phase_columns,
         "band_gap_eV", "pl_energy_eV", "optical_phase"],
        truth,
        [f"truth of the synthetic run: scale {RUBY_SCALE}, lambda0_nm {RUBY_LAMBDA0_NM}",
         "pressure_GPa: sample pressure during the XRD exposure = mean of the true pressures before and after "
         "(p006 too, whose after spectrum was lost)",
         f"XRD: wavelength_A {g.wavelength_A}, geometry xrd.poni, mask xrd.mask; transitions "
         + "; ".join(f"{a} -> {b} {lo}-{hi} GPa" for a, b, lo, hi in xrd.TRANSITIONS),
         "<phase>/fraction: share of HgTe formula units in the phase (mole = mass fraction); "
         "<phase>/crystallite_nm: Scherrer size; see data-sample/README.md",
         "band_gap_eV, pl_energy_eV: true gap and PL peak of the dominant phase optical_phase "
         "(dacpipe.synth.optical; rock salt is metallic: no gap)"])
    _write_tsv(folder / "truth_spots.tsv",
               ["point", "row", "col", "sigma_px", "peak_counts", "two_theta_deg", "local_counts", "ring_counts"],
               spots,
               ["diamond spots added to the XRD frames: peak_counts * exp(-((i - row)^2 + (j - col)^2) / "
                "(2 sigma_px^2)) at pixel (i, j), before the Poisson noise",
                "local_counts / ring_counts: powder pattern at the spot's 2theta / its maximum within 1 deg "
                "(hgte_pattern units)"])


def write_cdse_nc(folder: Path, seed: int) -> None:
    """The ``cdse_nc`` run: CdSe nanocrystals (5 nm wurtzite, 4 nm rock salt)
    compressed to 7 GPa and released, with 20 nm gold beside them read as the
    pressure marker; one XRD frame per point, no ruby.

    The frames are the 1D model of :mod:`dacpipe.synth.powder` (true Voigt
    lines, a DAC background) spread over the small detector of ``hgte_thz``,
    with its beamstop, module gap and Poisson noise.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "xrd").mkdir(exist_ok=True)
    xrd.write_xrd_geometry(folder)
    series = powder.cdse_round_trip_series(marker="Au")
    scale = series.scale() * CDSE_COUNTS_PER_PIXEL / powder.PEAK_COUNTS
    sheet, truth = [], []
    columns = ["CdSe-wz/fraction", "CdSe-rs/fraction", "CdSe-wz/volume_fu_A3", "CdSe-rs/volume_fu_A3",
               "Au/a_A", "CdSe-wz/crystallite_nm", "CdSe-rs/crystallite_nm"]
    fractions = series.fractions()
    volumes = {name: series.volume_fu_A3(name) for name in series.sample_phases}
    for i, point in enumerate(series.points, start=1):
        name = f"p{i:03d}"
        counts = xrd.frame_from_pattern(lambda tth: powder.expected_pattern(
            xrd.q_of_two_theta(tth), series.wavelength_A, point, scale=scale), _frame_rng(seed, 3, i))
        image = f"xrd/cdse_{name}.cbf"
        write_cbf(folder / image, counts)
        direction = "compression" if i <= 10 else "release"
        sheet.append([name, image, f"{TEMPERATURE_K:g}", direction])
        values = [fractions["CdSe-wz"][i - 1], fractions["CdSe-rs"][i - 1], volumes["CdSe-wz"][i - 1],
                  volumes["CdSe-rs"][i - 1], point.cell("Au")[0],
                  point.crystallite_nm["CdSe-wz"] if fractions["CdSe-wz"][i - 1] > 0 else math.nan,
                  point.crystallite_nm["CdSe-rs"] if fractions["CdSe-rs"][i - 1] > 0 else math.nan]
        truth.append([name, _fmt(point.pressure_GPa), *[_fmt(v) for v in values]])
    _write_tsv(folder / "points.tsv", ["point", "xrd", "temperature_K", "note"], sheet)
    _write_tsv(folder / "truth.tsv", ["point", "pressure_GPa", *columns], truth,
               ["truth of the synthetic run (dacpipe.synth.powder.cdse_round_trip_series): CdSe nanocrystals, "
                "wurtzite -> rock salt 2.6-4.2 GPa up, back 1.6-0.4 GPa down; gold (Au) as pressure marker",
                f"XRD: wavelength_A {series.wavelength_A}, geometry xrd.poni, mask xrd.mask; <phase>/fraction: share "
                "of CdSe formula units; volumes per formula unit; Au/a_A the marker's cell (Fei 2007 EOS)"])


# The second HgTe run of the hgte_sizes campaign: smaller nanocrystals, a
# few points only. Smaller crystallites transform at higher pressure (the
# surface energy of the nanocrystal favours the low-pressure phase; Tolbert &
# Alivisatos, Science 265, 373 (1994), for CdSe) and have a wider,
# quantum-confined gap: the 6 nm run has the 9 nm run's E(P) raised by
# HGTE_6NM_CONFINEMENT_EV.
HGTE_6NM_PRESSURES_GPA = (0.3, 1.4, 2.6, 3.6, 4.8)
HGTE_6NM_TRANSITION_GPA = (3.1, 4.3)  # zinc blende -> cinnabar, onset and end
HGTE_6NM_CRYSTALLITE_NM = {"HgTe-zb": 6.0, "HgTe-cinnabar": 5.0}
HGTE_6NM_CONFINEMENT_EV = 0.15
# A second ruby at another place of the chamber reads this much more per GPa
# of the sample's ruby: a pressure gradient that grows with pressure. The
# number is a choice, not a published value: large enough (0.015-0.24 GPa
# over the run) to stand above the ruby fit's error (~0.003 GPa a spectrum) at
# every point, so a test sees the gradient; a well-loaded liquid medium below its
# hydrostatic limit may show less.
HGTE_6NM_GRADIENT_PER_GPA = 0.05


def hgte_6nm_series(pressures_GPa) -> powder.Series:
    """The truth of ``hgte_6nm`` at the exposure pressures: zinc blende going
    to cinnabar linearly between :data:`HGTE_6NM_TRANSITION_GPA`."""
    onset, end = HGTE_6NM_TRANSITION_GPA
    points = []
    for p in pressures_GPa:
        zb = float(np.clip((end - p) / (end - onset), 0.0, 1.0))
        points.append(powder.PointTruth(float(p), {"HgTe-zb": zb, "HgTe-cinnabar": 1.0 - zb},
                                        HGTE_6NM_CRYSTALLITE_NM))
    return powder.Series("hgte_6nm", ("HgTe-zb", "HgTe-cinnabar"), None, tuple(points))


def write_hgte_6nm(folder: Path, seed: int) -> None:
    """The ``hgte_6nm`` run: 6 nm HgTe nanocrystals, 5 points to 4.8 GPa
    through zinc blende -> cinnabar; ruby before and after, a second ruby
    elsewhere in the chamber (``ruby_2``, :func:`_write_second_ruby`), one XRD frame
    (the 1D model of :mod:`dacpipe.synth.powder` on the detector of
    ``hgte_thz``) and an absorption spectrum per point.

    The absorbance is that of a quantum-dot film
    (:func:`~dacpipe.synth.optical.qd_edge_absorbance`, same DAC baseline and
    noise as the edges of :mod:`dacpipe.synth.optical`): the Tauc edge of the
    continuum at the gap of the point's dominant phase plus
    :data:`HGTE_6NM_CONFINEMENT_EV`, and below it a resolved first-exciton band
    :data:`~dacpipe.synth.optical.QD_CONTINUUM_ABOVE_EXCITON_EV` lower (truth
    ``exciton_eV``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "xrd").mkdir(exist_ok=True)
    (folder / "optical").mkdir(exist_ok=True)
    ruby = write_ruby_series(folder, "hgte6", HGTE_6NM_PRESSURES_GPA, np.random.default_rng([seed, 4]),
                             scale_name=RUBY_SCALE, lambda0_nm=RUBY_LAMBDA0_NM)
    xrd.write_xrd_geometry(folder)
    series = hgte_6nm_series([r.exposure_pressure_GPa for r in ruby])
    scale = series.scale() * xrd.REFERENCE_PEAK_COUNTS / powder.PEAK_COUNTS
    fractions = series.fractions()
    light_rng = np.random.default_rng([seed, 4, 0])
    ruby_2 = _write_second_ruby(folder, ruby, np.random.default_rng([seed, 4, 0, 2]))
    sheet, truth = [], []
    for i, (r, point) in enumerate(zip(ruby, series.points), start=1):
        counts = xrd.frame_from_pattern(lambda tth: powder.expected_pattern(
            xrd.q_of_two_theta(tth), series.wavelength_A, point, scale=scale), _frame_rng(seed, 4, i))
        image = f"xrd/hgte6_{r.point}.cbf"
        write_cbf(folder / image, counts)
        phase = max(series.sample_phases, key=lambda name: fractions[name][i - 1])
        gap = optical.true_gap_eV(phase, point.pressure_GPa) + HGTE_6NM_CONFINEMENT_EV
        exciton = gap - optical.QD_CONTINUUM_ABOVE_EXCITON_EV
        energy = np.linspace(*optical.ABS_ENERGY_RANGE_EV, optical.ABS_POINTS)[::-1]  # wavelength increasing
        amplitude = light_rng.uniform(0.8, 1.2)
        baseline = optical.dac_baseline(energy, light_rng.uniform(0.10, 0.30), light_rng.uniform(0.03, 0.10))
        height = optical.QD_EXCITON_HEIGHT * light_rng.uniform(0.8, 1.2)
        absorbance = (optical.qd_edge_absorbance(energy, gap, exciton, height, amplitude) + baseline
                      + light_rng.normal(0.0, optical.ABSORBANCE_NOISE, energy.size))
        spectrum = f"optical/hgte6_{r.point}_abs.txt"
        (folder / spectrum).write_text("\n".join(["wavelength_nm\tabsorbance"] + [
            f"{a:.3f}\t{b:.5f}" for a, b in zip(HC_EV_NM / energy, absorbance)]) + "\n", encoding="utf-8")
        sheet.append([r.point, image, r.files["before"], r.files["after"], ruby_2[r.point][0], spectrum,
                      f"{TEMPERATURE_K:g}", f"step {i}"])
        values = []
        for name in series.sample_phases:
            present = fractions[name][i - 1] > 0
            values += [fractions[name][i - 1], series.volume_fu_A3(name)[i - 1],
                       HGTE_6NM_CRYSTALLITE_NM[name] if present else math.nan]
        truth.append(_ruby_truth(r) + [_fmt(point.pressure_GPa)] + [_fmt(v) for v in values]
                     + [_fmt(gap), phase, _fmt(ruby_2[r.point][1]), _fmt(exciton)])
    _write_tsv(folder / "points.tsv",
               ["point", "xrd", "ruby_before", "ruby_after", "ruby_2", "absorption", "temperature_K", "note"], sheet)
    columns = [f"{name}/{q}" for name in series.sample_phases for q in ("fraction", "volume_fu_A3", "crystallite_nm")]
    onset, end = HGTE_6NM_TRANSITION_GPA
    _write_tsv(folder / "truth.tsv",
               ["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K", "pressure_GPa", *columns,
                "band_gap_eV", "optical_phase", "pressure_ruby_2_GPa", "exciton_eV"],
               truth,
               [f"truth of the synthetic run: scale {RUBY_SCALE}, lambda0_nm {RUBY_LAMBDA0_NM}",
                "pressure_GPa: sample pressure during the XRD exposure = mean of the true pressures before and after",
                "pressure_ruby_2_GPa: the second ruby (sheet column ruby_2, elsewhere in the chamber), read with the "
                f"ruby_before spectrum: pressure_before_GPa * (1 + {HGTE_6NM_GRADIENT_PER_GPA}), a pressure gradient",
                f"XRD: wavelength_A {series.wavelength_A}, geometry xrd.poni, mask xrd.mask; transition "
                f"HgTe-zb -> HgTe-cinnabar {onset}-{end} GPa (dacpipe.synth.runs.hgte_6nm_series)",
                f"band_gap_eV: gap of the dominant phase optical_phase, dacpipe.synth.optical's E(P) + "
                f"{HGTE_6NM_CONFINEMENT_EV} eV of quantum confinement: the Tauc gap of the dots' continuum",
                f"exciton_eV: centre of the dots' first-exciton band (Gaussian, FWHM {optical.QD_EXCITON_FWHM_EV} eV), "
                f"band_gap_eV - {optical.QD_CONTINUUM_ABOVE_EXCITON_EV} eV (dacpipe.synth.optical.qd_edge_absorbance); "
                "empty: no exciton"])


def _write_second_ruby(folder: Path, ruby: list[RubyPoint], rng: np.random.Generator) -> dict[str, tuple[str, float]]:
    """A ruby spectrum per point from a second ruby elsewhere in the chamber,
    taken with the ``ruby_before`` spectrum, at the pressure before times
    ``1 + HGTE_6NM_GRADIENT_PER_GPA``: point -> (file, true pressure).

    Drawn from its own stream, so the run's other files are what they were
    without it; the spectrum is :func:`~dacpipe.synth.ruby.ruby_spectrum` with
    the R1 width and height laws of :func:`~dacpipe.synth.ruby.write_ruby_series`.
    """
    scale = get_scale(RUBY_SCALE, "ruby")
    out = {}
    for r in ruby:
        pressure = round(r.pressure_before_GPa * (1.0 + HGTE_6NM_GRADIENT_PER_GPA), 6)  # as written in truth.tsv
        r1 = float(scale.position_at(pressure, RUBY_LAMBDA0_NM))
        x, y = ruby_spectrum(r1, rng, lorentz_fwhm_nm=0.35 + 0.02 * pressure, r1_height=rng.uniform(6000.0, 20000.0))
        name = f"ruby/hgte6_{r.point}_r2.txt"
        write_spectrum(folder / name, x, y)
        out[r.point] = (name, pressure)
    return out


def write_nc_saxs(folder: Path, seed: int) -> None:
    """The ``nc_saxs`` run: a ruby spectrum before each SAXS frame, plus dark and flat."""
    folder.mkdir(parents=True, exist_ok=True)
    # The SAXS cell is held at each pressure before the exposure: no creep, no spectrum after.
    ruby = write_ruby_series(folder, "nc", saxs.SAXS_PRESSURES_GPA, np.random.default_rng([seed, 2]), creep_GPa=0.0,
                             sides=("before",), scale_name=RUBY_SCALE, lambda0_nm=RUBY_LAMBDA0_NM)
    (folder / "saxs").mkdir(exist_ok=True)
    _, flat = saxs.write_saxs_detector(folder, _frame_rng(seed, 2, 0))
    sheet, truth = [], []
    columns = list(saxs.superlattice_truth(0.0))
    for i, r in enumerate(ruby, start=1):
        pressure = r.pressure_before_GPa
        image = f"saxs/nc_{r.point}.cbf"
        write_cbf(folder / image, saxs.saxs_frame(pressure, flat, _frame_rng(seed, 2, i)))
        sheet.append([r.point, image, r.files["before"], f"{TEMPERATURE_K:g}", f"step {i}"])
        values = saxs.superlattice_truth(pressure)
        truth.append(_ruby_truth(r) + [_fmt(pressure)] + [_fmt(values[c]) for c in columns])
    _write_tsv(folder / "points.tsv", ["point", "saxs", "ruby_before", "temperature_K", "note"], sheet)
    g = saxs.SAXS_GEOMETRY
    _write_tsv(folder / "truth.tsv",
               ["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K", "pressure_GPa", *columns],
               truth,
               [f"truth of the synthetic run: scale {RUBY_SCALE}, lambda0_nm {RUBY_LAMBDA0_NM}",
                "pressure_GPa: sample pressure during the SAXS exposure (= before: the cell does not creep)",
                f"SAXS: wavelength_A {g.wavelength_A}, geometry saxs.poni, mask saxs.mask, dark saxs_dark.edf, "
                "flat saxs_flat.edf; fcc superlattice of nanocrystals, see data-sample/README.md"])


# The radial-geometry run: gold nanocrystals squeezed without a medium and
# seen through the gasket, so the lines' d change with azimuth (Singh's
# lattice strain). Its detector sits closer than hgte_thz's at a higher
# energy, so that the rings of Au 111, 200, 220, 311 and 222 are whole (every
# azimuth is needed to separate Q from d_P). t/G grows with pressure as it
# does in gold without a medium (~0.007 at 3 GPa to ~0.02 at 19 GPa; Duffy et
# al., Phys. Rev. B 60, 15063 (1999) measured t ~ 0.3-0.6 GPa on gold to
# 37 GPa with G ~ 30-60 GPa): a stated choice, not a fitted law.
AU_RADIAL_GEOMETRY = DetectorGeometry(shape=(360, 360), pixel_m=100e-6, distance_m=0.0600, poni1_m=0.01812,
                                      poni2_m=0.01794, rot1_rad=0.0041, rot2_rad=-0.0032, rot3_rad=0.0,
                                      wavelength_A=0.3100)
AU_RADIAL_PRESSURES_GPA = (3.0, 7.0, 11.0, 15.0, 19.0)
AU_RADIAL_PRESSURE_ERR_GPA = 0.2       # as typed in the sheet
AU_RADIAL_CRYSTALLITE_NM = 10.0
AU_RADIAL_LOAD_AXIS_CHI_DEG = 90.0     # pyFAI's chi of the load axis on the detector (vertical)
AU_RADIAL_PEAK_COUNTS = 800.0          # Au 111 at its top in the unstrained azimuthal average


def au_radial_t_over_g(pressure_GPa: float) -> float:
    """The truth's t/G = 6 Q at ``pressure_GPa`` (see :data:`AU_RADIAL_GEOMETRY`'s comment)."""
    return 0.004 + 0.0009 * pressure_GPa


def write_au_radial(folder: Path, seed: int) -> None:
    """The ``au_radial`` run: 10 nm gold, no pressure medium, radial geometry, 5 points to 19 GPa with
    the pressures typed in the sheet (``gauge: sheet``: the truth plus a normal error of
    :data:`AU_RADIAL_PRESSURE_ERR_GPA`, typed with it); one frame per point whose every line follows
    d_P [1 + (1 - 3 cos^2 psi) Q] (:func:`dacpipe.synth.strain.strained_frame`), truth t/G = 6 Q."""
    from .strain import strained_frame

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "xrd").mkdir(exist_ok=True)
    geometry = AU_RADIAL_GEOMETRY
    xrd.write_xrd_geometry(folder, geometry)
    shadow = xrd.beamstop_shadow(geometry)
    sheet, truth = [], []
    # The typed pressures are readings (of a gauge outside the run) with their error: true + N(0, error).
    typed = np.array(AU_RADIAL_PRESSURES_GPA) + np.random.default_rng([seed, 5]).normal(
        0.0, AU_RADIAL_PRESSURE_ERR_GPA, len(AU_RADIAL_PRESSURES_GPA))
    for i, pressure in enumerate(AU_RADIAL_PRESSURES_GPA, start=1):
        name = f"p{i:03d}"
        point = powder.PointTruth(pressure, {"Au": 1.0}, {"Au": AU_RADIAL_CRYSTALLITE_NM})
        t_over_g = au_radial_t_over_g(pressure)
        counts = strained_frame("Au", point, geometry, t_over_g / 6.0, _frame_rng(seed, 5, i),
                                load_axis_chi_deg=AU_RADIAL_LOAD_AXIS_CHI_DEG, peak_counts=AU_RADIAL_PEAK_COUNTS,
                                polarization_factor=xrd.POLARIZATION_FACTOR)
        counts[shadow] = np.random.default_rng([seed, 5, i, 1]).poisson(
            xrd.BEAMSTOP_TRANSMISSION * np.maximum(counts[shadow], 0))
        image = f"xrd/au_{name}.cbf"
        write_cbf(folder / image, counts)
        sheet.append([name, image, _fmt(typed[i - 1], 2), _fmt(AU_RADIAL_PRESSURE_ERR_GPA, 2), f"{TEMPERATURE_K:g}",
                      f"step {i}"])
        a_A = point.cell("Au")[0]
        truth.append([name, _fmt(pressure), _fmt(a_A), _fmt(a_A ** 3 / 4.0), _fmt(t_over_g / 6.0), _fmt(t_over_g)])
    _write_tsv(folder / "points.tsv", ["point", "xrd", "pressure_GPa", "pressure_err_GPa", "temperature_K", "note"],
               sheet)
    _write_tsv(folder / "truth.tsv", ["point", "pressure_GPa", "Au/a_A", "Au/volume_fu_A3", "Q", "t_over_G"], truth,
               ["truth of the synthetic run (dacpipe.synth.runs.write_au_radial): 10 nm gold, no medium, radial "
                "geometry, pressures typed in the sheet = pressure_GPa + N(0, pressure_err_GPa); every line d = d_P [1 + (1 - 3 cos^2 psi) Q], cos psi = cos theta cos(chi - "
                f"{AU_RADIAL_LOAD_AXIS_CHI_DEG:g} deg) (Singh et al., J. Appl. Phys. 83, 7567 (1998)), t/G = 6 Q",
                f"XRD: wavelength_A {geometry.wavelength_A}, geometry xrd.poni, mask xrd.mask (beamstop); "
                "Au/a_A the hydrostatic cell d_P sqrt(h^2+k^2+l^2) (library EOS of Au at pressure_GPa)"])


# The temperature series: CsPbI3 nanocrystals in a membrane DAC inside a
# liquid-nitrogen flow cryostat, cooled from room temperature to 80 K (near
# the base of such a cryostat) in 8 points 30 K apart (295 K, then 260 K down
# to 80 K): even steps put 3-4 points below the theta = 200 K of the truth's
# Bose-Einstein E(T), where the curve bends, and 8 points leave 5 degrees of
# freedom to the 3-parameter fits. The cell gains pressure as it cools (the
# cell body and screws contract): 0.70 GPa at 295 K, 0.10 GPa more at 80 K,
# linear in T, plus a normal scatter of 0.01 GPa (choices). The truth's gap
# depends on temperature only: at a dEg/dP of order -0.03 eV/GPa the drift
# would move it by ~3 meV, which a real analysis corrects or avoids, and
# which would keep the fitted E(T) from being checked against its truth.
CSPBI3_T_TEMPERATURES_K = (295.0, 260.0, 230.0, 200.0, 170.0, 140.0, 110.0, 80.0)
CSPBI3_T_PRESSURE_GPA = (0.70, 0.10)      # at 295 K, and the gain on cooling to 80 K
CSPBI3_T_PRESSURE_SCATTER_GPA = 0.01
CSPBI3_T_REFERENCE_K = 298.0              # where lambda0 was measured (config reference_temperature_K)


def write_cspbi3_t(folder: Path, seed: int) -> None:
    """The ``cspbi3_t`` run: CsPbI3 nanocrystals at ~0.75 GPa from 295 K down to 80 K.

    Per point: a ruby spectrum whose R1 carries the true pressure and the
    thermal shift of Datchi et al. (2007) from the 298 K of lambda0
    (:func:`~dacpipe.synth.ruby.thermally_shifted_r1_nm`; R1 narrower on
    cooling, :func:`~dacpipe.synth.ruby.ruby_lorentz_fwhm_nm`), the sample's
    transmitted intensity and a PL spectrum
    (:func:`~dacpipe.synth.optical.write_cspbi3_optical`, with one reference
    I0 and one dark for the run). Everything is drawn from
    ``default_rng([seed, 6])`` in a fixed order: pressures, then per point
    the ruby spectrum, then the optical files.
    """
    from .ruby import ruby_lorentz_fwhm_nm, thermally_shifted_r1_nm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ruby").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 6])
    t = np.array(CSPBI3_T_TEMPERATURES_K)
    p0, gain = CSPBI3_T_PRESSURE_GPA
    span = t.max() - t.min()
    pressures = np.round(p0 + gain * (t.max() - t) / span + rng.normal(0.0, CSPBI3_T_PRESSURE_SCATTER_GPA, t.size), 6)
    points = [f"p{i:03d}" for i in range(1, t.size + 1)]
    ruby_files = {}
    for point, pressure, temperature in zip(points, pressures, t):
        r1 = thermally_shifted_r1_nm(pressure, temperature, scale_name=RUBY_SCALE, lambda0_nm=RUBY_LAMBDA0_NM,
                                     reference_K=CSPBI3_T_REFERENCE_K)
        x, y = ruby_spectrum(r1, rng, lorentz_fwhm_nm=ruby_lorentz_fwhm_nm(temperature),
                             r1_height=rng.uniform(6000.0, 20000.0))
        ruby_files[point] = f"ruby/cspbi3_{point}_ruby.txt"
        write_spectrum(folder / ruby_files[point], x, y)
    files, light, shared = optical.write_cspbi3_optical(folder, points, list(t), rng)
    sheet, truth = [], []
    for point, pressure, temperature in zip(points, pressures, t):
        sheet.append([point, ruby_files[point], files[point]["absorption"], files[point]["pl"], f"{temperature:g}",
                      "cooling"])
        truth.append([point, _fmt(pressure), "", f"{temperature:g}", _fmt(pressure),
                      _fmt(light[point]["band_gap_eV"]), _fmt(light[point]["pl_energy_eV"])])
    _write_tsv(folder / "points.tsv", ["point", "ruby_before", "absorption", "pl", "temperature_K", "note"], sheet)
    g = optical.CSPBI3_GAP_TRUTH
    _write_tsv(folder / "truth.tsv",
               ["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K", "pressure_GPa",
                "band_gap_eV", "pl_energy_eV"],
               truth,
               [f"truth of the synthetic run (dacpipe.synth.runs.write_cspbi3_t): scale {RUBY_SCALE}, lambda0_nm "
                f"{RUBY_LAMBDA0_NM} at {CSPBI3_T_REFERENCE_K:g} K; R1 shifted by the Datchi et al. (2007) thermal "
                "shift from that temperature (dacpipe.pressure.scales.ruby_thermal_shift_nm)",
                f"band_gap_eV = {optical.CSPBI3_GAP_MODEL}: E0_eV {g['E0_eV']} aB_eV {g['aB_eV']} theta_K "
                f"{g['theta_K']} (E0 - 2 aB / (exp(theta/T) - 1), Vina et al. 1984; opens on heating); "
                f"pl_energy_eV = band_gap_eV - {optical.CSPBI3_STOKES_SHIFT_EV}",
                f"absorption as raw counts: {shared['reference']} (I0), {shared['dark']} (dark), "
                "A = -log10[(I - dark) / (I0 - dark)]"])


# The heated series: 20 nm gold with a Sm:SrB4O7 chip in a resistively
# heated DAC (helium medium, liquid at ~6 GPa over this range, no lines of
# its own), taken from 300 to 750 K in 150 K steps at a constant membrane
# load. Both gauges need their temperature correction here: the Sm 0-0 line
# moves +0.69 nm from 298 to 750 K (Datchi et al. 2007), 2.7 GPa on its
# scale, and gold's thermal pressure from 300 to 750 K at ~6 GPa is 3.3 GPa
# (Fei et al. 2007), so a reading that ignored either would be off by far
# more than its error. 750 K is routine for resistive heaters and inside
# both calibrations (Sm to 900 K, Fei's gold to thousands of K); ~6 GPa puts
# the gold lines well off their ambient places. Four points, not five: a
# frame of this detector is ~72 kB however faint (CBF stores at least a
# byte a pixel), and the run stays under 400 kB. The cell gains 0.6 GPa on
# heating (the sample's and medium's thermal pressure at a fixed load,
# partly relaxed by the gasket: a choice), linear in T, plus a normal
# scatter of 0.05 GPa. The Sm line is read on Rashchenko et al. (2015), the
# scale the config's option selects, with its own lambda0 (685.51 nm) at 298 K.
# A second Sm chip near the gasket (sheet column ruby_2) reads the pressure
# times 1 + AU_HOT_GRADIENT_PER_GPA: 0.18-0.20 GPa more, a gradient that
# stands well above the Sm fit error (~0.005 GPa a spectrum) at every point,
# a choice, not a measured gradient of heated cells.
AU_HOT_TEMPERATURES_K = (300.0, 450.0, 600.0, 750.0)
AU_HOT_PRESSURE_GPA = (6.0, 0.6)         # at 300 K, and the gain on heating to 750 K
AU_HOT_PRESSURE_SCATTER_GPA = 0.05
AU_HOT_SM_SCALE = "rashchenko2015"
AU_HOT_SM_LAMBDA0_NM = 685.51            # Rashchenko et al. (2015)'s ambient 0-0 line
AU_HOT_REFERENCE_K = 298.0               # where lambda0 was measured (config reference_temperature_K)
AU_HOT_CRYSTALLITE_NM = 20.0
AU_HOT_PEAK_COUNTS = 1000.0              # Au 111 at its top, counts per pixel, at the first point
AU_HOT_GRADIENT_PER_GPA = 0.03


def gold_cell_at(pressure_GPa: float, temperature_K: float) -> tuple:
    """Gold's cubic cell at ``pressure_GPa`` and ``temperature_K`` from the
    library's thermal EOS (Fei et al., PNAS 104, 9182 (2007): Vinet 300 K
    isotherm plus Mie-Grueneisen-Debye thermal pressure,
    :func:`dacpipe.eos.models.pressure_at_temperature_GPa`), the volume found
    by root finding to 1e-12 A^3. The library cell (a0 = 4.0786 A, 67.8474
    A^3) is scaled by the EOS's compression V/V0 (V0 = 67.85 A^3), as
    :meth:`dacpipe.xrd.structure.Phase.cell_at` moves it at 300 K and as the
    marker reads it back; the absolute EOS volume would sit 3.8e-5 of V
    higher, 0.008 GPa."""
    from scipy.optimize import brentq

    from ..eos.models import pressure_at_temperature_GPa
    from ..xrd.library import get_phase, thermal_library

    phase = get_phase("Au")
    eos, thermal = phase.eos, thermal_library()["Au"]
    volume = brentq(lambda v: pressure_at_temperature_GPa(eos, thermal, v, temperature_K) - pressure_GPa,
                    0.7 * eos.V0_A3, 1.1 * eos.V0_A3, xtol=1e-12, rtol=1e-15)
    a = phase.cell[0] * (volume / eos.V0_A3) ** (1.0 / 3.0)
    return (a, a, a, 90.0, 90.0, 90.0)


def write_au_hot(folder: Path, seed: int) -> None:
    """The ``au_hot`` run: 20 nm gold with a Sm:SrB4O7 chip, heated from 300
    to 750 K at ~6 GPa (:data:`AU_HOT_TEMPERATURES_K`).

    Per point: a Sm:SrB4O7 spectrum whose 0-0 line carries the true
    pressure on :data:`AU_HOT_SM_SCALE` and the thermal shift from the
    298 K of lambda0 (:func:`~dacpipe.synth.ruby.thermally_shifted_sm_nm`,
    the line broader on heating, :func:`~dacpipe.synth.ruby.sm_lorentz_fwhm_nm`),
    in the sheet's gauge column ``ruby``, and one of a second chip near the
    gasket at the pressure times ``1 + AU_HOT_GRADIENT_PER_GPA`` (column
    ``ruby_2``, drawn from its own stream ``default_rng([seed, 7, 0, 2])``);
    and one XRD frame of gold (the 1D
    model of :mod:`dacpipe.synth.powder` on the detector of ``hgte_thz``, as
    :func:`write_cdse_nc`), its cell that of the thermal EOS at the true
    pressure and temperature (:func:`gold_cell_at`). The pressures and the
    spectra are drawn from ``default_rng([seed, 7])`` in a fixed order
    (pressures, then per point the line height and the spectrum), each
    frame from its own stream. The Debye-Waller damping of the lines on
    heating is left out: it lowers the high-angle lines, not their positions.
    """
    from .ruby import sm_lorentz_fwhm_nm, sm_srb4o7_spectrum, thermally_shifted_sm_nm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sm").mkdir(exist_ok=True)
    (folder / "xrd").mkdir(exist_ok=True)
    xrd.write_xrd_geometry(folder)
    rng = np.random.default_rng([seed, 7])
    t = np.array(AU_HOT_TEMPERATURES_K)
    p0, gain = AU_HOT_PRESSURE_GPA
    pressures = np.round(p0 + gain * (t - t.min()) / np.ptp(t) + rng.normal(0.0, AU_HOT_PRESSURE_SCATTER_GPA, t.size),
                         6)
    wavelength = xrd.XRD_GEOMETRY.wavelength_A
    points = [powder.PointTruth(float(p), {"Au": 1.0}, {"Au": AU_HOT_CRYSTALLITE_NM},
                                cells={"Au": gold_cell_at(float(p), float(temperature))})
              for p, temperature in zip(pressures, t)]
    scale = AU_HOT_PEAK_COUNTS / float(np.max(powder.line_heights("Au", points[0], wavelength)))
    second_rng = np.random.default_rng([seed, 7, 0, 2])
    sheet, truth = [], []
    for i, (pressure, temperature, point) in enumerate(zip(pressures, t, points), start=1):
        name = f"p{i:03d}"
        second = round(pressure * (1.0 + AU_HOT_GRADIENT_PER_GPA), 6)   # as written in truth.tsv
        files = {}
        for chip, p_chip, chip_rng in (("sm", pressure, rng), ("sm2", second, second_rng)):
            line_chip = thermally_shifted_sm_nm(p_chip, temperature, scale_name=AU_HOT_SM_SCALE,
                                                lambda0_nm=AU_HOT_SM_LAMBDA0_NM, reference_K=AU_HOT_REFERENCE_K)
            x, y = sm_srb4o7_spectrum(line_chip, chip_rng, lorentz_fwhm_nm=sm_lorentz_fwhm_nm(temperature),
                                      height=chip_rng.uniform(6000.0, 20000.0))
            files[chip] = f"sm/auhot_{name}_{chip}.txt"
            write_spectrum(folder / files[chip], x, y)
            if chip == "sm":
                line = line_chip
        counts = xrd.frame_from_pattern(lambda tth: powder.expected_pattern(
            xrd.q_of_two_theta(tth), wavelength, point, scale=scale), _frame_rng(seed, 7, i))
        image = f"xrd/auhot_{name}.cbf"
        write_cbf(folder / image, counts)
        sheet.append([name, image, files["sm"], files["sm2"], f"{temperature:g}", "heating"])
        a_A = point.cell("Au")[0]
        truth.append([name, _fmt(pressure), "", f"{temperature:g}", _fmt(pressure), _fmt(line), _fmt(a_A),
                      _fmt(a_A ** 3 / 4.0), _fmt(second)])
    _write_tsv(folder / "points.tsv", ["point", "xrd", "ruby", "ruby_2", "temperature_K", "note"], sheet)
    _write_tsv(folder / "truth.tsv",
               ["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K", "pressure_GPa", "sm_line_nm",
                "Au/a_A", "Au/volume_fu_A3", "pressure_sm_2_GPa"],
               truth,
               [f"truth of the synthetic run (dacpipe.synth.runs.write_au_hot): Sm:SrB4O7 0-0 line on scale "
                f"{AU_HOT_SM_SCALE}, lambda0_nm {AU_HOT_SM_LAMBDA0_NM} at {AU_HOT_REFERENCE_K:g} K, shifted by the "
                "thermal shift from that temperature (dacpipe.pressure.scales.sm_srb4o7_thermal_shift_nm); "
                "sm_line_nm the true line (sheet column ruby); pressure_sm_2_GPa the second chip (sheet column "
                f"ruby_2, near the gasket): pressure_GPa * (1 + {AU_HOT_GRADIENT_PER_GPA}), a pressure gradient",
                f"XRD: wavelength_A {wavelength}, geometry xrd.poni, mask xrd.mask; {AU_HOT_CRYSTALLITE_NM:g} nm gold "
                "whose cell Au/a_A is that of the library's thermal EOS (Fei et al. 2007, Vinet + "
                "Mie-Grueneisen-Debye) at pressure_GPa and temperature_K"])

"""One run's settings from the whole config, with the checks that need the domain's knowledge.

:mod:`dacpipe.io.config` reads and validates the config against the schema;
here a run's section gets what the schema cannot say: the gauge's default
scale, a scale that belongs to the gauge, a marker the library knows.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

from ..core.errors import ConfigError
from ..pressure.scales import get_scale


def run_config(config: dict, run_id: str) -> dict:
    """The validated settings of one run, with the gauge's default scale filled in."""
    try:
        run = copy.deepcopy(config["runs"][run_id])
    except KeyError:
        raise ConfigError(f"config: no run called {run_id!r}; runs: {', '.join(config.get('runs', {}))}") from None
    _check_calibration(config, run, run_id)
    pressure = run["pressure"]
    gauge = pressure["gauge"]
    if gauge == "xrd-marker":
        _check_marker(run, run_id)
    elif gauge != "sheet":
        # Here, not at the top: the gauges bring the fitting code (scipy.signal,
        # .stats, .ndimage: 0.75 s), which a figure or store job never needs.
        from ..pressure.gauges import GAUGES

        pressure.setdefault("scale", GAUGES[gauge].default_scale)
        try:
            get_scale(pressure["scale"], gauge)
        except ValueError as exc:
            raise ConfigError(f"config: runs.{run_id}.pressure.scale: {exc}") from None
        if GAUGES[gauge].axis == "nm":
            if pressure["spectrum"]["x_unit"] == "raman_shift_cm-1" and pressure["spectrum"]["laser_nm"] is None:
                raise ConfigError(f"config: runs.{run_id}.pressure.spectrum.laser_nm is required "
                                  "when x_unit is raman_shift_cm-1")
    return run


def _check_marker(run: dict, run_id: str) -> None:
    """``gauge: xrd-marker`` needs a marker the library or a file can give, and XRD to read it in."""
    key = f"config: runs.{run_id}.pressure"
    marker = run["pressure"]["marker"]
    if "xrd" not in run:
        raise ConfigError(f"{key}.gauge = 'xrd-marker' needs an xrd section in the run to read the marker in")
    if marker is None:
        raise ConfigError(f"{key}.marker is required with gauge xrd-marker; e.g. Au, Pt, NaCl-B1, Ne")
    if Path(marker).suffix.lower() in (".jcpds", ".cif"):
        return
    from ..xrd.library import library_names  # the library brings the EOS code (scipy.optimize)

    names = library_names()
    if marker not in names:
        close = difflib.get_close_matches(marker, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}.marker = {marker!r} is not a library phase{hint} nor a .jcpds or .cif file")


def calibration_poni_path(config: dict, run_id: str) -> Path:
    """The PONI file a run that calibrates on ``xrd.calibrant_image`` writes, ``<results>/<run>/calibration.poni``."""
    return Path(config["results_dir"]) / run_id / "calibration.poni"


def _check_calibration(config: dict, run: dict, run_id: str) -> None:
    """``xrd.calibrant_image`` instead of ``xrd.poni``: the run integrates with
    the PONI file its calibration writes (:func:`calibration_poni_path`), so
    ``poni`` is set to it here; a calibration needs a calibrant and a wavelength."""
    key = f"config: runs.{run_id}"
    if run.get("saxs", {}).get("calibrant_image"):
        raise ConfigError(f"{key}.saxs.calibrant_image: calibration from a calibrant image is for xrd only; "
                          "give saxs.poni")
    xrd = run.get("xrd")
    if not xrd or not xrd.get("calibrant_image"):
        return
    target = calibration_poni_path(config, run_id)
    # A config that went through here once (a job's --config-json) has poni
    # set to the target already.
    if xrd.get("poni") is not None and Path(xrd["poni"]) != target:
        raise ConfigError(f"{key}.xrd: give poni or calibrant_image, not both")
    for name, example in (("calibrant", "CeO2"), ("wavelength_A", "0.4066")):
        if xrd.get(name) is None:
            raise ConfigError(f"{key}.xrd.{name} is required with calibrant_image; e.g. {example}")
    if xrd["poni_convention"] != "pyfai":
        raise ConfigError(f"{key}.xrd.poni_convention = {xrd['poni_convention']!r}: a calibration from "
                          "calibrant_image refers to the image as read, convention 'pyfai'")
    xrd["poni"] = str(target)

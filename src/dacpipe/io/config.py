"""Loading and validating the configuration (``config/config.yaml``).

The schema lives in the package (``dacpipe/io/schema.yaml``, package data,
so a wheel has it too); ``config/schema.yaml`` is a link to it, for editors
and Snakemake's ``validate()``. Validation fills in the schema's defaults
(the workflow's too: workflow/rules/common.smk calls :func:`validate_config`),
so code downstream reads every key without guessing, and
:func:`validate_section` gives one section's settings to code that takes a
section without the whole config (every ``Settings.from_config``).
"""

from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from ..core.errors import ConfigError
from .package_yaml import read_package_yaml


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The configuration schema shipped with the package."""
    return read_package_yaml(__package__, "schema.yaml")


def _with_defaults(validator_class):
    """A validator class that also writes each property's ``default``.

    This is the recipe of the jsonschema FAQ, the one Snakemake's
    ``validate(..., set_default=True)`` uses, so the CLI and the workflow see
    the same filled-in config.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line: where, what was given, what was expected."""
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"config: {where}: unknown key {', '.join(hints)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"config: {where} = {error.instance!r} is not allowed{hint}; "
                f"expected one of: {', '.join(map(str, error.validator_value))}")
    if error.validator == "type":
        return f"config: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"config: {where}: {error.message}"
    if error.validator == "pattern" and "x-allowed" in error.schema:
        # a value that becomes a path in the workflow's shell commands (results_dir)
        return f"config: {where} = {error.instance!r} is not allowed; it may hold {error.schema['x-allowed']}"
    if error.validator == "anyOf" and all(set(sub) == {"required"} for sub in error.validator_value):
        # e.g. an integration section needs poni or calibrant_image
        keys = [" and ".join(repr(k) for k in sub["required"]) for sub in error.validator_value]
        return f"config: {where}: needs {' or '.join(keys)}"
    return f"config: {where} = {error.instance!r}: {error.message}"


def validate_config(config: dict) -> dict:
    """Validate ``config`` in place against the schema and fill its defaults.

    Raises
    ------
    ConfigError
        With a one-line message naming the key, the value given and what
        was expected, for the first problem (the shallowest one).
    """
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path)))
    if errors:
        # Within oneOf/anyOf, the sub-error usually says more than the parent.
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best))
    _check_campaigns(config)
    _check_geometry(config)
    return config


def _check_campaigns(config: dict) -> None:
    """What the schema cannot say of ``campaigns``: each names runs of ``runs``,
    with one value of its ``by`` per run."""
    for name, campaign in config.get("campaigns", {}).items():
        key = f"config: campaigns.{name}"
        unknown = [run for run in campaign["runs"] if run not in config["runs"]]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(config["runs"]), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}.runs: no run {unknown[0]!r} in runs{hint}; runs: {', '.join(config['runs'])}")
        if len(campaign["values"]) != len(campaign["runs"]):
            raise ConfigError(f"{key}.values has {len(campaign['values'])} values for {len(campaign['runs'])} runs; "
                              f"give one value of {campaign['by']!r} per run, in the order of runs")


def _check_geometry(config: dict) -> None:
    """An integration section names ``poni`` or ``calibrant_image``, unless it
    is ``xrd`` and the run's sheet gives integrated patterns (column
    ``pattern``) and no image without one: nothing to integrate, and only the
    wavelength is needed (``wavelength_A``, or the patterns' headers). The
    sheet is read only for a section without a geometry."""
    for run_id, run in config.get("runs", {}).items():
        for kind in ("xrd", "saxs"):
            section = run.get(kind)
            if not isinstance(section, dict) or section.get("poni") or section.get("calibrant_image"):
                continue
            if kind == "xrd" and _patterns_only(run.get("sheet")):
                continue
            hint = " (or, with no image to integrate, a pattern column in the sheet)" if kind == "xrd" else ""
            raise ConfigError(f"config: runs.{run_id}.{kind}: needs 'poni' or 'calibrant_image'{hint}")


def _patterns_only(sheet_path) -> bool:
    """Whether the sheet gives integrated patterns and every point with an XRD image gives one too
    (a point with both uses its pattern: dacpipe.integration.from_patterns)."""
    from ..core.errors import DacpipeError
    from .sheet import read_sheet  # only for a section without a geometry: most configs never read the sheet here

    try:
        points = read_sheet(sheet_path).points if sheet_path else ()
    except (DacpipeError, OSError):
        return False  # no sheet to tell: the geometry is required, as for any run
    return any("pattern" in p.files for p in points) and \
        all("pattern" in p.files for p in points if "xrd" in p.files)


def validate_section(name: str, section: dict | None) -> dict:
    """One run section (``optical``, ...) validated against its schema
    definition, with its defaults filled: for code that takes a section
    without going through the whole config.

    Raises
    ------
    ConfigError
        As :func:`validate_config`, naming ``<name>.<key>``.
    """
    schema = load_schema()
    wrapper = {"$defs": schema["$defs"], "type": "object", "properties": {name: {"$ref": f"#/$defs/{name}"}}}
    instance = {name: copy.deepcopy(section) if section is not None else {}}
    errors = list(_Validator(wrapper).iter_errors(instance))
    if errors:
        raise ConfigError(_describe(jsonschema.exceptions.best_match(errors)))
    return instance[name]


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"runs.x.pressure.scale=shen2020"`` -> (key path, YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. runs.hgte_thz.pressure.scale=shen2020")
    return key.strip().split("."), yaml.safe_load(value)


def merge(base: dict, override: dict) -> dict:
    """Deep merge, ``override`` winning; the way Snakemake layers --configfile."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_config(paths: Iterable[str | Path], assignments: Iterable[str] = ()) -> dict:
    """Read config files in order (later ones layered on earlier), apply
    ``key=value`` assignments, validate and fill defaults.

    A validation error names the files it came from (``a.yaml + b.yaml:``).
    """
    config: dict = {}
    paths = list(paths)
    for path in paths:
        config = merge(config, read_yaml(path))
    for text in assignments:
        keys, value = parse_assignment(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {key!r} is not a mapping in the config")
        node[keys[-1]] = value
    try:
        return validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"{' + '.join(map(str, paths))}: {err}") from None



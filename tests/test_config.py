"""Config validation: defaults filled, and one-line messages that name key, value and expectation."""

from pathlib import Path

import pytest
import yaml

from dacpipe.io.config import load_config, validate_config
from dacpipe.run.config import run_config
from dacpipe.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def minimal(**pressure):
    return {"runs": {"r1": {"sheet": "points.tsv", "pressure": pressure}}}


def test_default_config_is_valid_and_filled():
    config = load_config([ROOT / "config" / "config.yaml"])
    assert config["results_dir"] == "results"
    pressure = config["runs"]["hgte_thz"]["pressure"]
    assert pressure["scale"] == "mao1986-hydrostatic"
    assert pressure["profile"] == "pseudo-voigt"            # default from the schema
    assert pressure["spectrum"]["x_unit"] == "nm"            # nested default


def test_gauge_default_scale():
    config = validate_config({"runs": {"a": {"sheet": "s.tsv"}, "b": {"sheet": "s.tsv",
                                                                       "pressure": {"gauge": "sm-srb4o7"}}}})
    assert run_config(config, "a")["pressure"]["scale"] == "shen2020"
    assert run_config(config, "b")["pressure"]["scale"] == "datchi1997"


def test_typo_in_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as err:
        validate_config(minimal(scael="shen2020"))
    message = str(err.value)
    assert "runs.r1.pressure" in message and "'scael'" in message and "did you mean 'scale'" in message
    assert "\n" not in message


def test_unknown_scale_names_value_and_choices():
    with pytest.raises(ConfigError) as err:
        validate_config(minimal(scale="mao1968"))
    message = str(err.value)
    assert "runs.r1.pressure.scale" in message and "'mao1968'" in message and "dewaele2008" in message


def test_wrong_type():
    with pytest.raises(ConfigError) as err:
        validate_config(minimal(lambda0_nm="694.24nm"))
    assert "runs.r1.pressure.lambda0_nm" in str(err.value) and "'694.24nm'" in str(err.value)


def test_scale_of_another_gauge():
    config = validate_config(minimal(gauge="sm-srb4o7", scale="shen2020"))
    with pytest.raises(ConfigError, match="for the ruby gauge"):
        run_config(config, "r1")


def test_layering_and_set(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"runs": {"hgte_thz": {"pressure": {"scale": "dewaele2008"}}}}))
    config = load_config([ROOT / "config" / "config.yaml", extra], ["runs.hgte_thz.pressure.profile=lorentzian"])
    pressure = config["runs"]["hgte_thz"]["pressure"]
    assert pressure["scale"] == "dewaele2008" and pressure["profile"] == "lorentzian"
    assert pressure["lambda0_nm"] == 694.24  # kept from the base file


def test_error_names_the_files(tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("runs:\n  hgte_thz:\n    pressure:\n      gauge: rubi\n")
    with pytest.raises(ConfigError) as err:
        load_config([ROOT / "config" / "config.yaml", extra])
    assert str(err.value).startswith(f"{ROOT / 'config' / 'config.yaml'} + {extra}: config: runs.hgte_thz")
    assert "did you mean 'ruby'" in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([bad])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"])


def test_snakemake_validate_accepts_the_same_schema():
    from snakemake.utils import validate

    config = {"runs": {"r1": {"sheet": "s.tsv"}}}
    validate(config, str(ROOT / "config" / "schema.yaml"))
    assert config["runs"]["r1"]["pressure"]["gauge"] == "ruby"


def test_package_yaml_reads_what_safe_load_reads():
    """The schema, phase library and media are parsed with libyaml's C loader
    (every job reads them at its start): the same documents as yaml.safe_load."""
    from dacpipe.io.package_yaml import read_package_yaml

    src = ROOT / "src" / "dacpipe"
    for package, name in (("dacpipe.io", "io/schema.yaml"), ("dacpipe.xrd", "xrd/library.yaml"),
                          ("dacpipe.pressure", "pressure/media.yaml")):
        assert read_package_yaml(package, name.split("/")[1]) == yaml.safe_load((src / name).read_text()), name

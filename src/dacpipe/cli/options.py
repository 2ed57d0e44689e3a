"""What every ``dacpipe`` command shares: logging to the console (and a file), and the config options."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import sys
from pathlib import Path

from ..io.config import load_config, validate_config

log = logging.getLogger("dacpipe")


DEFAULT_CONFIG = Path("config/config.yaml")


def setup_logging(log_file: str | None) -> None:
    """Messages to standard error and, with ``--log FILE``, to FILE too.

    Under Snakemake each rule passes its log as FILE: what would otherwise
    reach only the job's standard error must reach the log as well, so
    Python warnings go through logging (``captureWarnings``), an unexpected
    exception is logged with its traceback by :func:`dacpipe.cli.main`, and
    a fatal signal in compiled code (a segfault in a library) dumps the
    Python stack into FILE (:mod:`faulthandler`).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
        faulthandler.enable(file=handlers[-1].stream, all_threads=True)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("dacpipe: %(message)s"))
    log.handlers[:] = handlers
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.handlers[:] = handlers
    warnings_log.propagate = False


def config_from_args(args) -> dict:
    if getattr(args, "config_json", None):
        return validate_config(json.loads(args.config_json))
    files = args.configfile or [DEFAULT_CONFIG]
    return load_config(files, args.set or [])


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", action="append", metavar="FILE",
                        help="config file (repeat to layer; default config/config.yaml)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one key, e.g. runs.hgte_thz.pressure.scale=shen2020")

"""The ``dacpipe`` command: a thin layer over the package's functions.

``dacpipe run`` processes runs in-process for users who never touch
Snakemake; ``dacpipe stage`` and ``dacpipe assemble`` are what the Snakemake
rules call, one job per run and stage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..core.errors import ConfigError, DacpipeError
from ..io.refs import file_part
from ..io.sheet import make_sheet, read_sheet
from ..run.config import run_config
from ..run.figures import FIGURES, STYLES, draw_figure, draw_figures, figures_for
from ..run.layout import figure_path, store_path
from ..run.lock import LOCK_WAIT_HELP, lock_path, run_lock
from ..run.runner import assemble_run, merge_stage, run_stage
from ..run.stages import STAGES, finish_function, stages_for
from ..run.store import merge_chunks
from .options import add_config_options, config_from_args, setup_logging
from .progress import Progress
from .watch import add_parser as add_watch_parser

log = logging.getLogger("dacpipe")


def cmd_run(args) -> int:
    config = config_from_args(args)
    run_ids = args.runs or list(config["runs"])
    failed = []
    for run_id in run_ids:
        try:
            run_config(config, run_id)   # an unknown run: no folder made for its lock
            # One process at a time writes a run (dacpipe.run.lock): a second waits, saying for whom.
            with run_lock(lock_path(config, run_id), wait_s=args.lock_wait, say=log.warning):
                _calibrate_run(run_config(config, run_id), run_id)
                for stage in stages_for(run_config(config, run_id)):
                    run_stage(config, run_id, stage, progress=Progress(f"{run_id} {stage}"))
                out = assemble_run(config, run_id)
                log.info(f"{run_id}: wrote {out}")
                if args.figures:
                    for name in figures_for(run_config(config, run_id)):
                        draw_figure(name, out, figure_path(config, run_id, name), width=config["figures"]["width"])
                    log.info(f"{run_id}: figures in {figure_path(config, run_id, '').parent}")
        except DacpipeError as err:
            log.error(f"{run_id}: {err}")
            failed.append(run_id)
    failed += _run_campaigns(config, run_ids, failed, args.figures)
    return 1 if failed else 0


def _run_campaigns(config: dict, run_ids: list[str], failed: list[str], figures: bool) -> list[str]:
    """After ``dacpipe run``: each campaign with a run just processed, none of
    its runs failed and every store there, written (with its figures). Returns
    the campaigns that failed."""
    from ..run.campaign import campaign_figure_path, campaign_from_config, campaign_path, write_campaign
    from ..run.campaign_figures import draw_campaign_figures

    bad = []
    for name, spec in config.get("campaigns", {}).items():
        runs = spec["runs"]
        if not set(runs) & set(run_ids) or set(runs) & set(failed):
            continue
        missing = [run for run in runs if not store_path(config, run).is_file()]
        if missing:
            log.warning(f"campaign {name}: not written, some of its runs have no store yet ({', '.join(missing)})")
            continue
        try:
            out = write_campaign(campaign_path(config, name), campaign_from_config(config, name))
            log.info(f"campaign {name}: wrote {out}")
            if figures:
                draw_campaign_figures(out, campaign_figure_path(config, name, "").parent,
                                      config.get("figures", {}).get("width", "screen"))
        except DacpipeError as err:
            log.error(f"campaign {name}: {err}")
            bad.append(f"campaign {name}")
    return bad


def _calibrate_run(run: dict, run_id: str) -> None:
    """A run with ``xrd.calibrant_image`` calibrates first, into the PONI file its integration reads."""
    if "xrd" in run and run["xrd"].get("calibrant_image"):
        from ..integration.calibrate import calibrate_section

        calibration = calibrate_section(run["xrd"], run["xrd"]["poni"])
        log.info(f"{run_id}: calibrated on {run['xrd']['calibrant_image']}: distance "
                 f"{calibration.distance_m * 1e3:.3f} mm, rms {calibration.rms_px:.2f} px on "
                 f"{len(calibration.rings)} rings; wrote {run['xrd']['poni']}")


def cmd_calibrate(args) -> int:
    from ..integration.calibrate import calibrate_file, calibrate_section, write_poni

    if args.run:  # the run's xrd section says what (the Snakemake rule)
        run = run_config(config_from_args(args), args.run)
        if not run.get("xrd", {}).get("calibrant_image"):
            raise ConfigError(f"config: runs.{args.run}.xrd has no calibrant_image to calibrate on")
        image, out = run["xrd"]["calibrant_image"], args.output or run["xrd"]["poni"]
        calibration = calibrate_section(run["xrd"], out)
    else:
        missing = [name for name, value in (("IMAGE", args.image), ("--calibrant", args.calibrant),
                                            ("--wavelength", args.wavelength), ("-o", args.output)) if value is None]
        if missing:
            raise ConfigError(f"dacpipe calibrate needs {', '.join(missing)} (or --run RUN with a config)")
        image, out = args.image, args.output
        calibration = calibrate_file(image, args.calibrant, args.wavelength, detector=args.detector,
                                     pixel_size_um=args.pixel_size, mask_path=args.mask,
                                     beam_center_px=args.beam_center, max_rms_px=args.max_rms_px)
        write_poni(calibration, out, source=image)
    print(f"{image}:\n{calibration.summary()}\nwrote {out}")
    return 0


def _figure_outputs(names: list[str], out: str | None, out_dir: str | None, command: str) -> list[Path]:
    """The PNG of each figure: ``--out`` for one, ``--out-dir``/<name>.png for any number."""
    if out_dir:
        return [Path(out_dir) / f"{name}.png" for name in names]
    if out and len(names) == 1:
        return [Path(out)]
    raise ConfigError(f"{command} needs --out-dir for several figures, --out (the PNG) or --out-dir for one")


def cmd_figure(args) -> int:
    # Several figures in one command: the workflow draws a run's figures in one job (each job
    # pays the start-up and matplotlib's import, ~1 s, for a figure that takes ~0.3 s).
    if args.out_dir:
        written = draw_figures(args.name, args.store, args.out_dir, width=args.width, jobs=args.jobs)
    else:
        out = _figure_outputs(args.name, args.out, None, "dacpipe figure")[0]
        written = draw_figure(args.name[0], args.store, out, width=args.width)
    for path in written:
        log.info(f"wrote {path}")
    return 0


def cmd_campaign(args) -> int:
    from ..run.campaign import campaign_figure_path, campaign_from_config, campaign_path, write_campaign
    from ..run.campaign_figures import draw_campaign_figure, draw_campaign_figures

    if args.figure:  # figures from a written campaign file (the Snakemake rule)
        if not args.campaign_file:
            raise ConfigError("dacpipe campaign --figure needs --campaign-file")
        for name, out in zip(args.figure, _figure_outputs(args.figure, args.out, args.out_dir,
                                                          "dacpipe campaign --figure")):
            for path in draw_campaign_figure(name, args.campaign_file, out, width=args.width):
                log.info(f"wrote {path}")
        return 0
    config = config_from_args(args)
    out = write_campaign(args.out or campaign_path(config, args.name),
                         campaign_from_config(config, args.name, args.stores))
    log.info(f"campaign {args.name}: wrote {out}")
    if args.figures:
        draw_campaign_figures(out, campaign_figure_path(config, args.name, "").parent,
                              config.get("figures", {}).get("width", "screen"))
    return 0


def cmd_stage(args) -> int:
    config = config_from_args(args)
    label = f"{args.run} {args.stage}" + (f" chunk {args.chunk}" if args.chunk is not None else "")
    run_stage(config, args.run, args.stage, out=args.out, progress=Progress(label), chunk=args.chunk)
    return 0


def cmd_merge(args) -> int:
    if args.stage is not None and finish_function(args.stage) is not None:
        merge_stage(config_from_args(args), args.run, args.stage, args.parts, args.out)
    else:
        merge_chunks(args.parts, args.out, args.run)
    log.info(f"{args.run}: merged {len(args.parts)} chunks into {args.out}")
    return 0


def cmd_assemble(args) -> int:
    config = config_from_args(args)
    run_config(config, args.run)
    with run_lock(lock_path(config, args.run), wait_s=args.lock_wait, say=log.warning):
        out = assemble_run(config, args.run, parts=args.parts, out=args.out)
    log.info(f"{args.run}: wrote {out}")
    return 0


def cmd_validate(args) -> int:
    config = config_from_args(args)
    problems = 0
    for run_id in config["runs"]:
        run = run_config(config, run_id)
        sheet = read_sheet(run["sheet"])
        for point in sheet.points:
            for column, ref in point.files.items():
                if not Path(file_part(ref)).is_file():
                    log.warning(f"{run_id}/{point.point}: {ref}: {column} file not found")
                    problems += 1
            for problem in point.problems:
                log.warning(f"{run_id}/{point.point}: {sheet.path}: {problem}")
                problems += 1
        print(f"{run_id}: {len(sheet.points)} points, store {store_path(config, run_id)}")
    if problems:
        print(f"config and sheets are valid, but {problems} problem{'s' * (problems > 1)} above need attention")
        return 1
    print("config and sheets are valid; every file they name is there")
    return 0


def cmd_sheet(args) -> int:
    text = make_sheet(args.folder)
    if args.output:
        Path(args.output).write_text(text)
        log.info(f"wrote {args.output}: review it before use")
    else:
        sys.stdout.write(text)
    return 0


def cmd_synth(args) -> int:
    from ..synth import write_data_sample

    root = write_data_sample(args.folder, **({} if args.seed is None else {"seed": args.seed}))
    log.info(f"wrote synthetic runs under {root}")
    return 0


def cmd_export(args) -> int:
    from ..run.load import export_run

    config = config_from_args(args) if args.configfile or not args.run.endswith(".h5") else None
    written = export_run(args.run, args.to, args.out, config=config, say=log.warning)
    folder = written[0].parent if written else args.out
    log.info(f"wrote {len(written)} {args.to} file{'s' * (len(written) != 1)} in {folder}")
    return 0


def add_lock_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-wait", type=float, metavar="SECONDS", help=LOCK_WAIT_HELP)


class _Version(argparse.Action):
    """``--version``: the package's version, looked up only when asked for (importlib.metadata)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        parser.exit(message=f"dacpipe {__version__}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dacpipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    parser.add_argument("--log", metavar="FILE", help="also write messages to FILE")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="process runs from sheet to result store, without Snakemake")
    add_config_options(p)
    p.add_argument("--runs", nargs="+", metavar="RUN", help="only these runs (default: all in the config)")
    p.add_argument("--figures", action="store_true", help="also draw the run's figures from its store")
    add_lock_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("calibrate", help="refine a PONI geometry from a calibrant image, without a click")
    p.add_argument("image", nargs="?", help="the calibrant's image (any format dacpipe reads)")
    p.add_argument("--calibrant", help="pyFAI calibrant name (CeO2, LaB6, Si, ...) or a .D file")
    p.add_argument("--wavelength", type=float, metavar="A", help="X-ray wavelength in angstrom")
    p.add_argument("--detector", help="pyFAI detector name (default: from the image's shape and header)")
    p.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size (um) of a detector pyFAI does not know")
    p.add_argument("--mask", help="mask file (beamstop), non-zero = masked, in the image's frame")
    p.add_argument("--beam-center", type=float, nargs=2, metavar=("ROW", "COL"),
                   help="starting beam centre (pixels), when the beam misses the detector")
    p.add_argument("--max-rms-px", type=float, default=0.5, metavar="PX",
                   help="refuse a calibration whose control points lie further (rms) from their rings (default 0.5)")
    p.add_argument("-o", "--output", help="PONI file to write (with --run: default <results>/<run>/calibration.poni)")
    p.add_argument("--run", help="calibrate as the run's xrd section says (calibrant_image, calibrant, ...)")
    p.add_argument("--config-json", help="the whole validated config as JSON (from Snakemake)")
    add_config_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("figure", help="draw figures of a run from its result store (PNG and PDF)")
    p.add_argument("name", nargs="+", choices=list(FIGURES))
    p.add_argument("--store", required=True, help="the run's results/<run>.h5")
    p.add_argument("--out", help="PNG to write (one figure); the PDF goes beside it")
    p.add_argument("--out-dir", help="folder to write each figure in as <name>.png and <name>.pdf")
    p.add_argument("--jobs", type=int, default=1, help="with --out-dir, figures drawn at once (processes)")
    p.add_argument("--width", choices=list(STYLES), default="screen",
                   help="screen (default: each figure's own size), or a journal column, the files exactly "
                        "that wide: single-column (3.35 in) or double-column (7.0 in)")
    p.set_defaults(func=cmd_figure)

    from ..run.campaign_figures import CAMPAIGN_FIGURES

    p = sub.add_parser("campaign", help="compare the runs of a campaign of the config from their stores: "
                                        "<results>/campaigns/NAME.h5 and its figures")
    p.add_argument("name", help="the campaign (config key campaigns.NAME)")
    p.add_argument("--stores", nargs="+", help="the runs' stores, in the campaign's run order "
                                               "(default <results>/<run>.h5)")
    p.add_argument("--out", help="file to write (default <results>/campaigns/NAME.h5); with one --figure, the PNG")
    p.add_argument("--out-dir", help="with --figure, the folder of the figures (<figure>.png and .pdf)")
    p.add_argument("--figures", action="store_true", help="also draw the campaign's figures")
    p.add_argument("--figure", nargs="+", choices=list(CAMPAIGN_FIGURES),
                   help="draw only these figures from --campaign-file")
    p.add_argument("--campaign-file", help="the campaign file a --figure is drawn from")
    p.add_argument("--width", choices=list(STYLES), default="screen",
                   help="size of the --figure: screen, or a journal column (config figures.width)")
    p.add_argument("--config-json", help="the whole validated config as JSON (from Snakemake)")
    add_config_options(p)
    p.set_defaults(func=cmd_campaign)

    p = sub.add_parser("stage", help="run one stage of one run (what the Snakemake rules call)")
    p.add_argument("stage", choices=list(STAGES))
    p.add_argument("--run", required=True)
    p.add_argument("--out", help="part file to write (default <results>/<run>/parts/<stage>.h5)")
    p.add_argument("--chunk", type=int, help="only chunk K of the points (run.chunk_points per chunk)")
    p.add_argument("--config-json", help="the whole validated config as JSON (from Snakemake)")
    add_config_options(p)
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser("merge", help="join a stage's chunk parts into the run's part, in point order")
    p.add_argument("--run", required=True)
    p.add_argument("--parts", nargs="+", required=True, help="chunk parts, in point order")
    p.add_argument("--out", required=True)
    p.add_argument("--stage", help="the stage: one with a whole-series step (phases: the transitions) "
                                   "needs the config too")
    p.add_argument("--config-json", help="the run's validated config as JSON (from Snakemake)")
    add_config_options(p)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("assemble", help="merge a run's stage parts into <results>/<run>.h5")
    p.add_argument("--run", required=True)
    p.add_argument("--parts", nargs="+", help="part files (default: every stage's)")
    p.add_argument("--out", help="store to write (default <results>/<run>.h5)")
    p.add_argument("--config-json", help="the whole validated config as JSON (from Snakemake)")
    add_config_options(p)
    add_lock_option(p)
    p.set_defaults(func=cmd_assemble)

    p = sub.add_parser("validate", help="check the config and sample sheets without processing")
    add_config_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("sheet", help="write a first sample sheet for a folder, pairing files on numbers")
    p.add_argument("folder")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("synth", help="write the synthetic runs of data-sample/ from known truth")
    p.add_argument("folder", nargs="?", default="data-sample")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the data-sample seed)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("export", help="write a run's store in the formats Dioptas, GSAS-II, EosFit7, "
                                      "PeakPo and spreadsheets read")
    p.add_argument("run", help="the run's store (results/<run>.h5), or a run name of the config")
    p.add_argument("--to", required=True, choices=["xy", "chi", "xye", "eosfit", "jcpds", "csv"],
                   help="xy/chi: Dioptas/Fit2D patterns; xye: GSAS-II patterns and .instprm; eosfit: P-V per "
                        "phase; jcpds: fitted cells with their EOS; csv: every per-point table")
    p.add_argument("--out", help="folder to write (default <results>/<run>/export/<format>)")
    add_config_options(p)
    p.set_defaults(func=cmd_export)

    add_watch_parser(sub)
    return parser


def _snakemake_hint(args) -> str:
    """What a job Snakemake started adds to its error line: without
    ``--keep-going`` Snakemake stops every other run's jobs at the first
    failed one (an empty sheet in one run stops them all)."""
    if getattr(args, "config_json", None) is None:  # not started by a rule
        return ""
    return (" (Snakemake stops the other runs' jobs too unless run with --keep-going, "
            "as --workflow-profile workflow/profiles/local does)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    try:
        return args.func(args)
    except DacpipeError as err:
        log.error(str(err) + _snakemake_hint(args))
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception:  # a bug, not bad input: the traceback goes to the console and the log file
        log.exception(f"unexpected error in `dacpipe {args.command}` (a bug: please report it with this log)")
        return 1


if __name__ == "__main__":
    sys.exit(main())



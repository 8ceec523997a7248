"""Command line: ``negd reproduce``, ``negd run``, ``negd report``, ``negd bench``.

* ``negd reproduce {shallow,deep,finite-beta}``: an experiment of Whitelam et al. 2021 at quick
  (default) or paper scale, with its sigma scan, then the report;
* ``negd reproduce {digits,mnist1d}``: the same comparison on a classifier, with accuracy curves
  and Adam for reference (:mod:`negd.experiments.classification`);
* ``negd reproduce variants``: population, adaptive and minibatch neuroevolution, each next to its
  twin (:mod:`negd.experiments.variants`);
* ``negd reproduce control``: CartPole-v1 and Pendulum-v1 by neuroevolution, a population rule and aMC
  beside the mean-field twin, no gradient anywhere (:mod:`negd.experiments.control`);
* ``negd run CONFIG`` / ``negd run --resume DIR``: a user's experiment from a YAML/TOML file;
* ``negd sweep CONFIG --grid KEY=V1,V2 ...``: one run per grid point and a correspondence map;
* ``negd report DIR``: (re)build figures and report of a run directory;
* ``negd bench ...``: the benchmarks (arguments go to :mod:`negd.bench.cli`);
* ``negd info``: the kernel in use (prebuilt, native or the torch fallback), torch, CUDA, Ray;
* ``negd --version``.

Every error is one line ``negd: error: ...`` on stderr and exit status 2; Ctrl-C exits with 130
after saving what was computed and printing how to resume.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from negd.validation import NegdError

__all__ = ["main"]

EXIT_ERROR = 2
# The main job's wall time, measured (docs/experiments.md, "Measured wall time"); README.md and
# docs/experiments.md state this same text (tests/test_cli_conventions.py).
MAIN_JOB_TIME = "about 4 minutes on 2 free CPU cores"
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """A command-line error, reported as one line (argparse would print usage and a traceback-free
    two-line message; we want exactly one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        command = self.prog.removeprefix("negd").strip()
        raise _UsageError(f"{command}: {message}" if command else message)


def _twin_realizations(text: str) -> int:
    """argparse type of --twin-realizations: an integer >= 2 (the twin's variance needs two)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text!r}")
    return value


def _shards(text: str) -> int:
    """argparse type of --shards: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _add_sharding(parser: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    parser.add_argument("--shards", type=_shards, default=None, metavar="K",
                        help="split every arm's realizations into K shards advanced separately between "
                             "snapshots (same numbers as unsharded; default: no shards)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run each shard as a Ray task: 'local' starts a local cluster for this run, "
                             "else the address of a running one (needs pip install 'negd[ray]')")
    if not checkpoint:
        return
    parser.add_argument("--shard-checkpoint", type=_seconds, default=None, metavar="SECONDS",
                        help="seconds of work between two checkpoints of a shard in the run directory "
                             "(default 30; a killed worker or run loses at most about that)")


def _seconds(text: str) -> float:
    """argparse type of --shard-checkpoint: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _sharding_kwargs(shards, ray, checkpoint_seconds=None) -> dict:
    """``shards``/``ray``/``shard_checkpoint_seconds`` keyword arguments of the runner, only those given
    (the default run is unchanged)."""
    given = (("shards", shards), ("ray", ray), ("shard_checkpoint_seconds", checkpoint_seconds))
    return {k: v for k, v in given if v is not None}


_NO_PROGRESS = "no progress bars (they are off anyway when the output is not a terminal)"
_ALLOW_PATH_CHANGE = ("with --resume: continue even if this machine computes on another path (kernel or "
                      "torch, dtypes, device, versions) than the run started on; recorded in config.json")


def _build_parser() -> argparse.ArgumentParser:
    import negd
    from negd.experiments.classification import CLASSIFICATION_EXPERIMENTS
    from negd.experiments.config.presets import EXPERIMENTS, SCALES

    parser = _Parser(prog="negd", description="Neuroevolution <-> gradient descent experiments "
                     "(Whitelam et al., Nat. Commun. 12, 6317, 2021).")
    parser.add_argument("--version", action="version", version=f"negd {negd.__version__}",
                        help="print negd's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{reproduce,run,sweep,report,bench,info}")
    sub.required = True

    rep = sub.add_parser("reproduce", help="run one of the paper's experiments and build its report")
    rep.add_argument("experiment",
                     choices=list(EXPERIMENTS) + list(CLASSIFICATION_EXPERIMENTS) + ["variants", "control"],
                     help="shallow (the main job), deep, finite-beta: the paper's; digits, mnist1d: "
                          "classifiers (digits needs pip install 'negd[tasks]'); variants: population, "
                          "adaptive and minibatch neuroevolution; control: CartPole-v1 and Pendulum-v1")
    rep.add_argument("--scale", choices=(*SCALES, "full"), default=None,
                     help=f"quick (default; shallow: {MAIN_JOB_TIME} with the C kernel) or paper "
                          "(control: quick or full)")
    rep.add_argument("--realizations", type=int, default=None, help="number of NE realizations of arm 0")
    rep.add_argument("--twin", choices=("noiseless", "langevin", "matched", "mean-field"), default=None,
                     help="the twin NE is compared with (default: the preset's: noiseless GD at "
                          "beta = inf, a Langevin ensemble at finite beta; matched: an ensemble of "
                          "moment-matched Langevin runs, right at any z = beta sigma |grad U|; mean-field: "
                          "an ensemble of runs of NE's expected step from 64 proposals, no gradient)")
    rep.add_argument("--twin-realizations", type=_twin_realizations, default=None, metavar="N",
                     help="realizations of an ensemble twin (langevin, matched or mean-field; integer >= 2; "
                          "default: the preset's, 32 for finite-beta at quick scale, 8 for mean-field, else "
                          "--realizations)")
    rep.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    rep.add_argument("--out", type=Path, default=None, help="run directory (default runs/<name>-...)")
    rep.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default cpu")
    rep.add_argument("--dtype", choices=("auto", "float32", "float64"), default=None,
                     help="parameter dtype (default auto: float64 where sigma is too small for float32; "
                          "losses are float64 in any case)")
    rep.add_argument("--no-scan", action="store_true", help="skip the sigma/2, sigma/4 arms")
    rep.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue an interrupted run")
    rep.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)
    rep.add_argument("--allow-path-change", action="store_true", help=_ALLOW_PATH_CHANGE)
    _add_sharding(rep)

    run = sub.add_parser("run", help="run an experiment described by a YAML or TOML file")
    run.add_argument("config", type=Path, nargs="?", default=None,
                     help="experiment file, YAML or TOML (format: docs/experiments.md); not with --resume")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory, new or empty (default runs/<name>-<time>)")
    run.add_argument("--resume", type=Path, default=None, metavar="DIR",
                     help="continue the interrupted run in DIR (its config.json is used)")
    run.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)
    run.add_argument("--allow-path-change", action="store_true", help=_ALLOW_PATH_CHANGE)
    _add_sharding(run)

    sweep = sub.add_parser("sweep", help="one run per point of a grid and a correspondence map")
    sweep.add_argument("config", type=Path,
                       help="base experiment file, YAML or TOML, optionally with a grid section")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a grid axis over a numeric key (sigma, lambda, beta, alpha, realizations, ...) "
                            "or over twin names (twin=noiseless,mean-field); "
                            "repeat for more axes; replaces the same key of the file's grid section")
    sweep.add_argument("--out", type=Path, default=None,
                       help="sweep directory (default runs/sweep-...); rerunning into it continues the sweep")
    sweep.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)
    _add_sharding(sweep, checkpoint=False)  # a sweep's runs checkpoint their shards every 30 s

    report = sub.add_parser("report", help="build summary, figures and report.md of a run directory")
    report.add_argument("run_dir", type=Path, help="a run directory (with its config.json)")

    sub.add_parser("bench", help="benchmarks (all further arguments go to negd.bench; negd bench --help)",
                   add_help=False)
    sub.add_parser("info", help="the kernel in use (prebuilt, native or torch fallback), torch, CUDA, Ray")
    return parser


def _print_verdict(run_dir: Path) -> None:
    """The verdict line(s) of the report: the bullets under report.md's "Verdict" heading, else
    summary.json's "verdict"."""
    report = run_dir / "report.md"
    if report.exists():
        lines, inside = [], False
        for line in report.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("#"):
                inside = "verdict" in line.lower()
            elif inside and line.lstrip().startswith(("-", "*")):
                lines.append(line.strip().lstrip("-* ").replace("**", ""))
        if lines:
            print("\n".join(lines))
            return
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            verdict = json.loads(summary.read_text(encoding="utf-8", errors="replace")).get("verdict")
        except (ValueError, AttributeError):  # damaged summary.json: no verdict line
            verdict = None
        if verdict:
            print(f"verdict: {verdict}")


def _finish(result, resume_hint: str) -> int:
    if result.report_message:
        print(f"negd: {result.report_message}", file=sys.stderr)
    if result.state == "interrupted":
        print(f"negd: interrupted; the snapshots computed so far are in {result.run_dir}", file=sys.stderr)
        print(f"negd: resume with: {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"run: {result.run_dir}")
    if result.report is not None:
        print(f"report: {result.report}")
    _print_verdict(result.run_dir)
    # A run asked for a report and got none (e.g. "report failed"): not a success.
    return 0 if result.report is not None or not result.report_message else EXIT_ERROR


def _announce(run_dir: Path) -> int:
    """The lines a finished run of minutes ends with: where it is, its report and its verdict."""
    print(f"run: {run_dir}")
    print(f"report: {run_dir / 'report.md'}")
    _print_verdict(run_dir)
    return 0


def _refuse_unused_flags(args: argparse.Namespace, experiment: str, *, dtype: str, device_allowed: bool,
                         why: str) -> None:
    """One line for a flag that ``experiment`` would accept and ignore (its set-up is fixed: ``why``)."""
    for flag, value in (("--resume", args.resume), ("--twin", args.twin),
                        ("--twin-realizations", args.twin_realizations),
                        ("--device", None if device_allowed else args.device),
                        ("--allow-path-change", args.allow_path_change or None),
                        ("--dtype", None if args.dtype in (None, "auto", dtype) else args.dtype),
                        ("--no-scan", args.no_scan or None), ("--shards", args.shards), ("--ray", args.ray),
                        ("--shard-checkpoint", args.shard_checkpoint)):
        if value is not None:
            raise NegdError(f"{flag}: not available for {experiment!r} ({why})")


def _reproduce_classification(args: argparse.Namespace) -> int:
    """``negd reproduce digits|mnist1d``: NE, its twin and Adam on a classifier (minutes; no resume)."""
    from negd.experiments.classification import classification_preset, run_classification

    _refuse_unused_flags(args, args.experiment, dtype="float32", device_allowed=True,
                         why="float32 parameters, a noiseless twin, no sigma scan, no shards, a run of "
                             "minutes")
    exp = classification_preset(args.experiment, args.scale or "quick", realizations=args.realizations,
                                seed=args.seed or 0, device=args.device or "cpu")
    run_dir = run_classification(exp, args.out, progress=not args.no_progress)
    return _announce(run_dir)


def _reproduce_variants(args: argparse.Namespace) -> int:
    """``negd reproduce variants``: each neuroevolution variant next to its twin (minutes; no resume)."""
    from negd.experiments.variants import run_variants, variants_preset

    _refuse_unused_flags(args, "variants", dtype="float64", device_allowed=False,
                         why="float64 on the CPU, each rule's own twin, a run of minutes")
    exp = variants_preset(args.scale or "quick", realizations=args.realizations,
                          seed=0 if args.seed is None else args.seed)
    run_dir = run_variants(exp, args.out, progress=not args.no_progress)
    return _announce(run_dir)


def _reproduce_control(args: argparse.Namespace) -> int:
    """``negd reproduce control``: control tasks without a gradient (minutes; --resume continues one)."""
    from negd.experiments.control import (
        ControlExperiment,
        EnvSettings,
        control_preset,
        default_run_dir,
        run_control,
    )
    from negd.experiments.control_store import experiment_from_config
    from negd.experiments.run.provenance import check_flags

    resume = args.resume  # the one flag of the paper's experiments that control has too
    others = argparse.Namespace(**(vars(args) | {"resume": None}))
    _refuse_unused_flags(others, "control", dtype="float64", device_allowed=False,
                         why="float64 on the CPU, the mean-field twin, a run of minutes")
    if resume is not None:
        if args.out is not None:
            raise NegdError("--out: not allowed with --resume (the run continues in its own directory)")
        exp = experiment_from_config(resume, ControlExperiment, EnvSettings)
        counts = sorted({s.realizations for s in exp.envs})
        check_flags({"--scale": exp.scale, "--seed": exp.seed,
                     "--realizations": counts[0] if len(counts) == 1 else counts},
                    {"--scale": args.scale, "--seed": args.seed, "--realizations": args.realizations}, resume)
        run_dir = resume
    else:
        exp = control_preset(args.scale or "quick", realizations=args.realizations,
                             seed=0 if args.seed is None else args.seed)
        run_dir = args.out if args.out is not None else default_run_dir(exp)
    try:
        run_control(exp, run_dir, progress=not args.no_progress, resume=resume is not None)
    except KeyboardInterrupt:
        if (Path(run_dir) / "config.json").exists():
            print(f"negd: interrupted; the finished arms and the last snapshot of the running one are in "
                  f"{run_dir}", file=sys.stderr)
            print(f"negd: resume with: negd reproduce control --resume {run_dir}", file=sys.stderr)
        else:
            print("negd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _announce(Path(run_dir))


def _reproduce(args: argparse.Namespace) -> int:
    from negd.experiments.classification import CLASSIFICATION_EXPERIMENTS
    from negd.experiments.run.runner import load_run_config, resume_experiment, run_experiment

    if args.experiment in CLASSIFICATION_EXPERIMENTS:
        return _reproduce_classification(args)
    if args.experiment == "variants":
        return _reproduce_variants(args)
    if args.experiment == "control":
        return _reproduce_control(args)
    if args.scale == "full":
        raise NegdError(f"--scale: 'full' is the control experiment's; {args.experiment!r} runs at "
                        f"{' or '.join(_scales())}")

    progress = not args.no_progress
    if args.resume is not None:
        if args.out is not None:
            raise NegdError("--out: not allowed with --resume (the run continues in its own directory)")
        config, _ = load_run_config(args.resume)
        if config.experiment != args.experiment:
            raise NegdError(f"--resume: {args.resume} is a {config.experiment!r} run, "
                            f"not {args.experiment!r}")
        _check_resume_flags(args, config)
        result = resume_experiment(args.resume, progress=progress, allow_path_change=args.allow_path_change,
                                   **_sharding_kwargs(args.shards, args.ray, args.shard_checkpoint))
    else:
        if args.allow_path_change:
            raise NegdError("--allow-path-change: only with --resume")
        result = run_experiment(_reproduce_config(args), args.out, progress=progress,
                                **_sharding_kwargs(args.shards, args.ray, args.shard_checkpoint))
    return _finish(result, f"negd reproduce {args.experiment} --resume {result.run_dir}")


def _check_resume_flags(args: argparse.Namespace, config) -> None:
    """Flags given with --resume must equal the run's settings (NegdError naming every difference)."""
    from negd.experiments.run.provenance import check_flags

    recorded = {"--scale": config.scale, "--seed": config.seed, "--realizations": config.realizations,
                "--device": config.device, "--twin": config.twin,
                "--twin-realizations": config.twin_realizations, "--no-scan": config.scan is None,
                "--dtype": config.dtype}
    given = {"--scale": args.scale, "--seed": args.seed, "--realizations": args.realizations,
             "--device": args.device, "--twin": args.twin, "--twin-realizations": args.twin_realizations,
             "--no-scan": True if args.no_scan else None,
             "--dtype": None if args.dtype in (None, "auto") else args.dtype}
    check_flags(recorded, given, args.resume)


def _reproduce_config(args: argparse.Namespace):
    """The preset of ``negd reproduce`` with the command-line overrides applied."""
    from negd.analysis.rundir import ENSEMBLE_TWINS
    from negd.experiments.config.presets import preset
    from negd.experiments.config.schema import config_from_dict

    config = preset(args.experiment, args.scale or "quick", realizations=args.realizations,
                    seed=0 if args.seed is None else args.seed, device=args.device or "cpu",
                    scan=not args.no_scan)
    if args.twin is not None and args.twin != config.twin:
        user = config.to_user_dict() | {"twin": args.twin}
        if args.twin not in ENSEMBLE_TWINS or config.twin not in ENSEMBLE_TWINS \
                or "mean-field" in (args.twin, config.twin):  # its runs cost M + 2 evaluations each
            user.pop("twin_realizations", None)  # the new twin's default
        config = config_from_dict(user, experiment=config.experiment, scale=config.scale)
    if args.dtype is not None and args.dtype != "auto":
        config = config.with_overrides(dtype=args.dtype)
    if args.twin_realizations is not None:
        if config.twin not in ENSEMBLE_TWINS:
            raise NegdError(f"--twin-realizations: only for an ensemble twin (langevin, matched or "
                            f"mean-field), not the {config.twin} twin of {args.experiment!r}")
        config = config.with_overrides(twin_realizations=args.twin_realizations)
    return config


def _run(args: argparse.Namespace) -> int:
    from negd.experiments.config.schema import load_config_and_options
    from negd.experiments.run.runner import resume_experiment, run_experiment

    progress = not args.no_progress
    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise NegdError("--resume: give only the run directory (its config.json is used)")
        result = resume_experiment(args.resume, progress=progress, allow_path_change=args.allow_path_change,
                                   **_sharding_kwargs(args.shards, args.ray, args.shard_checkpoint))
    else:
        if args.allow_path_change:
            raise NegdError("--allow-path-change: only with --resume")
        if args.config is None:
            raise NegdError("run: give a CONFIG file (YAML or TOML) or --resume DIR")
        try:
            config, options = load_config_and_options(args.config)
        except NegdError as e:
            raise NegdError(f"config error: {e}") from None
        if "grid" in options:
            raise NegdError(f"grid: {args.config} has a grid section: run it with negd sweep")
        shards = args.shards if args.shards is not None else options.get("shards")
        result = run_experiment(config, args.out, progress=progress,
                                **_sharding_kwargs(shards, args.ray, args.shard_checkpoint))
    return _finish(result, f"negd run --resume {result.run_dir}")


def _sweep(args: argparse.Namespace) -> int:
    import datetime as _dt
    import time

    from negd.experiments.sweep.grid import checked_grid, plan_sweep, read_sweep_file, run_sweep
    from negd.experiments.sweep.report import write_sweep_report

    try:
        base, options = read_sweep_file(args.config)  # validated point by point (plan_sweep)
    except NegdError as e:
        raise NegdError(f"config error: {e}") from None
    grid = checked_grid(options.get("grid"), args.grid)
    out = args.out or Path("runs") / f"sweep-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    shards = args.shards if args.shards is not None else options.get("shards")
    start = time.perf_counter()
    states = run_sweep(base, grid, out, progress=not args.no_progress, shards=shards, ray=args.ray,
                       log=lambda line: print(line, file=sys.stderr))
    state_of = {point.name: state for point, state in states}
    report = write_sweep_report(out, grid, plan_sweep(base, grid), state_of, time.perf_counter() - start)
    print(f"sweep: {out}")
    print(f"report: {report}")
    if len(states) < len(plan_sweep(base, grid)) or "interrupted" in state_of.values():
        grids = " ".join(f"--grid {g!r}" for g in args.grid)
        hint = f"negd sweep {args.config} {grids} --out {out}".replace("  ", " ")
        print(f"negd: interrupted; continue with: {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _report(args: argparse.Namespace) -> int:
    """Rebuild the report of whatever wrote the directory; never replace a report with less."""
    from negd.experiments.run.lock import run_dir_lock
    from negd.runfiles import RUN_KINDS, run_kind

    if not args.run_dir.is_dir():
        raise NegdError(f"report: {str(args.run_dir)!r} is not a directory")
    kind = run_kind(args.run_dir)
    if kind is None:
        raise NegdError(f"report: {str(args.run_dir)!r} is not a run directory of negd (no config.json of "
                        f"{', '.join(RUN_KINDS.values())})")
    if kind == "sweep":
        raise NegdError(f"report: {str(args.run_dir)!r} is a sweep directory; its report (sweep.md) is "
                        "rebuilt by rerunning the sweep into it (negd sweep CONFIG --grid ... --out DIR), "
                        "a point's by negd report DIR/<point>")
    with run_dir_lock(args.run_dir):  # the report writes into the run directory: one writer at a time
        if kind == "classification":
            from negd.experiments.classification import rebuild_report
            path = rebuild_report(args.run_dir)
        elif kind == "variants":
            from negd.experiments.variants import rebuild_report
            path = rebuild_report(args.run_dir)
        elif kind == "control":
            from negd.experiments.control import rebuild_report
            path = rebuild_report(args.run_dir)
        else:
            from negd.analysis import build_report
            from negd.analysis.rundir import check_report_keeps_results

            check_report_keeps_results(args.run_dir)
            path = build_report(args.run_dir)
    print(f"report: {path}")
    _print_verdict(args.run_dir)
    return 0


def _scales() -> tuple[str, ...]:
    from negd.experiments.config.presets import SCALES

    return SCALES


def _info(args: argparse.Namespace) -> int:  # noqa: ARG001 - a handler's signature
    from negd.info import info_lines

    print("\n".join(info_lines()))
    return 0


def _bench(rest: list[str]) -> int:
    try:
        from negd.bench.cli import main as bench_main
    except ImportError as e:
        raise NegdError(f"bench: negd.bench is not available ({e})") from None
    if rest[:1] == ["control"]:  # batched torch environments against gymnasium's vector environment
        from negd.bench.control import main as control_main

        return int(control_main(rest[1:]) or 0)
    return int(bench_main(rest) or 0)


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        # `kill` (SIGTERM) stops a run as cleanly as Ctrl-C: status "interrupted", resumable.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _main(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    try:
        if not argv:
            raise _UsageError("a command is required: reproduce, run, sweep, report, bench or info "
                              "(see negd --help)")
        if argv[0] == "bench":
            return _bench(argv[1:])
        args = _build_parser().parse_args(argv)
        handlers = {"reproduce": _reproduce, "run": _run, "sweep": _sweep, "report": _report, "info": _info}
        return handlers[args.command](args)
    except (NegdError, _UsageError) as e:
        print(f"negd: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # bad paths, unwritable directories
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"negd: error:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("negd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as e:  # --help, or a bench tool exiting
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``av-td3 validate``'s command line: arguments, limits given for runs without a config, the run loop
(parallel for 4+ runs) and the output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from av_td3 import tags
from av_td3.analysis.runs import find_run_paths
from av_td3.analysis.validate.checks import DEFAULTS, Options, RunReport
from av_td3.analysis.validate.output import exit_code, format_report, verdict_line
from av_td3.helptext import report_missing
from av_td3.jsonsafe import jsonable
from av_td3.analysis.validate.runner import validate_path
from av_td3.helptext import plain

# --- command line -------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("validate", help="check clipping and training health from event files",
                              description=plain(_doc()), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="an event file, a run directory or a multirun directory")
    p.add_argument("--json", action="store_true", help="print machine-readable results only")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the one-line verdicts")
    p.add_argument("--tolerance", type=float, default=DEFAULTS["tolerance"],
                   help="relative tolerance of the limit and ratio checks (default: %(default)g)")
    p.add_argument("--loss-warn", type=float, default=DEFAULTS["loss_warn"],
                   help="warn when |actor loss| exceeds this (default: %(default)g)")
    p.add_argument("--loss-fail", type=float, default=DEFAULTS["loss_fail"],
                   help="fail when |actor loss| exceeds this (default: %(default)g)")
    p.add_argument("--q-warn", type=float, default=DEFAULTS["q_warn"],
                   help="warn when |Q1| or |Q2| exceeds this (default: %(default)g)")
    p.add_argument("--q-fail", type=float, default=DEFAULTS["q_fail"],
                   help="fail when |Q1| or |Q2| exceeds this (default: %(default)g)")
    p.add_argument("--frozen-below", type=float, default=DEFAULTS["frozen_below"],
                   help="frozen/<net>: flag a network whose median update ratio ||step|| / ||weights|| over "
                        "the run's last half is below this (healthy: ~1e-3; default: %(default)g)")
    p.add_argument("--dead-below", type=float, default=DEFAULTS["dead_below"],
                   help="dead/<net>/<part>: flag a part whose BEFORE gradient norm is at most this at every "
                        "logged update (default: %(default)g)")
    p.add_argument("--limit", action="append", default=[], metavar="NET[.PART]=MAX_NORM",
                   help="a norm limit for runs without .hydra/config.yaml, e.g. --limit actor=1.0 --limit "
                        "critic=10.0 --limit actor.cnn=0.5 (repeatable)")
    p.add_argument("--norm-type", type=float, default=2.0, help="the norm of --limit (default: %(default)g)")
    p.add_argument("--clipping", type=Path, metavar="FILE.yaml",
                   help="limits from a clipping group file (conf/clipping/*.yaml), for runs without a config")
    p.add_argument("--override-limits", action="store_true",
                   help="--limit / --clipping win over a run's own config")
    p.add_argument("--strict", action="store_true",
                   help="frozen and dead checks FAIL (exit 1) instead of WARN")
    p.add_argument("-j", "--jobs", type=int, default=0,
                   help="runs validated in parallel processes (default 0: one per CPU for 4+ runs)")


def given_limits(specs: list[str], norm_type: float, clipping_file: Path | None) -> dict | None:
    """net -> NetClipConfig from ``--clipping FILE`` and ``--limit NET[.PART]=V`` (the latter win)."""
    from omegaconf import OmegaConf

    from av_td3.config.clipping import ClippingConfig, NetClipConfig
    from av_td3.config.errors import ConfigError

    if not specs and clipping_file is None:
        return None
    raw: dict = {n: {} for n in tags.NETWORKS}
    if clipping_file is not None:
        loaded = OmegaConf.to_container(OmegaConf.load(clipping_file))
        loaded = loaded.get("clipping", loaded)
        for net in tags.NETWORKS:
            raw[net].update(loaded.get(net) or {})
    for spec in specs:
        key, sep, value = spec.partition("=")
        net, _, part = key.partition(".")
        if not sep or net not in tags.NETWORKS or part not in ("", *tags.PARTS):
            raise ValueError(f"--limit {spec!r}: expected NET[.PART]=MAX_NORM with NET in {tags.NETWORKS} and "
                             f"PART in {tags.PARTS}")
        raw[net].update({"mode": "norm", "norm_type": norm_type, f"{part}_max_norm" if part else "max_norm":
                         float(value)})
    try:
        cfg = ClippingConfig(**{n: NetClipConfig(**v) for n, v in raw.items()})
    except (ConfigError, TypeError) as e:
        raise ValueError(f"invalid limits: {e}") from None
    return {n: getattr(cfg, n) for n in tags.NETWORKS if raw[n]}


def run(args: argparse.Namespace) -> int:
    if report_missing("validate", args.paths):
        return 2
    try:
        limits = given_limits(args.limit, args.norm_type, args.clipping)
    except (ValueError, OSError) as e:
        print(f"av-td3 validate: {e}", file=sys.stderr)
        return 2
    opts = Options(args.tolerance, args.loss_warn, args.loss_fail, args.q_warn, args.q_fail,
                   args.frozen_below, args.dead_below, args.strict, limits, args.override_limits)
    targets: list[Path] = []
    reports: list[RunReport] = []
    for path in args.paths:
        found = find_run_paths(path)
        if not found:
            reports.append(RunReport(str(path), "ERROR", error="no runs or event files "
                                                               f"(events.out.tfevents.*) in or below {path}"))
        targets += found
    jobs = args.jobs or (min(os.cpu_count() or 1, len(targets)) if len(targets) >= 4 else 1)
    if jobs > 1 and len(targets) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            reports += list(pool.map(validate_path, targets, [opts] * len(targets)))
    else:
        reports += [validate_path(t, opts) for t in targets]
    code = exit_code(reports)
    if args.json:
        print(json.dumps(jsonable({"exit_code": code, "runs": [asdict(r) for r in reports]}, nonfinite="text"), indent=1))
        return code
    for r in reports:
        if r.verdict == "ERROR":
            print(f"av-td3 validate: {r.error}", file=sys.stderr)
        elif not args.quiet:
            print(format_report(r) + "\n")
    if len(reports) > 1 or args.quiet:
        for r in reports:
            print(verdict_line(r))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="av-td3 validate", description=plain(_doc()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


def _doc() -> str:
    from av_td3.analysis import validate

    return validate.__doc__

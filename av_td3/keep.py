"""``av-td3 keep RUN_DIR DEST``: what of a run is worth keeping in version control, in DEST.

Copies the run's results.json, its csv tables (eval.csv, train.csv: every table the logger wrote), any
evaluate*.json (``av-td3 evaluate``'s output), and its Hydra record flattened: .hydra/config.yaml ->
DEST/config.yaml (the composed config), .hydra/overrides.yaml -> DEST/overrides.yaml. Kilobytes where
the run holds hundreds of megabytes (its checkpoint and event files stay behind). ``av-td3 compare`` and
``av-td3 report`` read a kept run as the run: the same groups, seeds and final figures, and its evaluation
curves from eval.csv; no gradient curves (``av-td3 validate`` marks it SKIP).

    av-td3 keep multirun/drive_from_camera/camera/seed=0 results/drive_from_camera/seed0

DEST is created; an existing DEST must be a kept run (keeping again refreshes its files). Exit 0, or 2 with
one line for a missing run, a folder that is not a run with results, or a DEST that is something else.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from av_td3.helptext import plain
from av_td3.rundir import CONFIG, KEPT_CONFIG, KEPT_OVERRIDES, OVERRIDES, RESULTS

KEPT_GLOBS = ("*.csv", "evaluate*.json")  # the logger's tables, av-td3 evaluate's outputs; and RESULTS


class KeepError(Exception):
    """A problem with the command's input, reported as one line (exit 2)."""


def keep(run_dir: Path, dest: Path) -> list[Path]:
    """Copy ``run_dir``'s kept files into ``dest``; the paths written."""
    if not run_dir.is_dir():
        raise KeepError(f"no run directory at {run_dir}")
    if not (run_dir / CONFIG).is_file():
        raise KeepError(f"{run_dir} is not a run directory (no {CONFIG})")
    if not (run_dir / RESULTS).is_file():
        raise KeepError(f"{run_dir} has no {RESULTS} yet (a run writes it when a segment ends)")
    if dest.exists() and any(dest.iterdir()) and not (dest / RESULTS).is_file():
        raise KeepError(f"{dest} exists and is not a kept run: give a new folder")
    if dest.resolve() == run_dir.resolve():
        raise KeepError("DEST is the run directory itself")
    dest.mkdir(parents=True, exist_ok=True)
    pairs = [(run_dir / RESULTS, dest / RESULTS)]
    pairs += [(p, dest / p.name) for pattern in KEPT_GLOBS for p in sorted(run_dir.glob(pattern))]
    pairs += [(run_dir / CONFIG, dest / KEPT_CONFIG), (run_dir / OVERRIDES, dest / KEPT_OVERRIDES)]
    written = []
    for src, dst in pairs:
        if src.is_file():
            shutil.copyfile(src, dst)
            written.append(dst)
    return written


def add_parser(sub) -> None:
    p = sub.add_parser("keep", help="copy what of a run is worth keeping (results, csv, config) to a folder",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory (av-td3-train's output)")
    p.add_argument("dest", metavar="DEST", type=Path, help="the kept run's folder")


def run(args) -> int:
    try:
        written = keep(args.run_dir, args.dest)
    except (KeepError, OSError) as e:
        print(f"av-td3 keep: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in written)
    print(f"kept {args.run_dir} in {args.dest}: {', '.join(p.name for p in written)} ({size / 1024:.0f} KiB)")
    return 0

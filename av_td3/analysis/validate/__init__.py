"""``av-td3 validate PATH...``: check gradient clipping and training health from a run's event files.

PATH is an event file, a run directory or a multirun directory (every run below it). Limits come from
each run's own ``.hydra/config.yaml`` (``clipping.<net>``), never from defaults here. For runs without one
(event files other TD3 code wrote) give them with ``--limit actor=1.0 --limit critic=10.0`` (also
``actor.cnn=...``, ``actor.mlp=...``; ``--norm-type``) or ``--clipping FILE.yaml`` (a ``clipping`` group
file); a run's own config still wins unless ``--override-limits``. A run with ``mode=none`` and a run
with no limits at all get the health checks only.

Checks, each PASS / WARN / FAIL (or SKIP where it does not apply), with its figures:
  gradients/<net>     the gradient tags are there and the norm is not zero everywhere
  cadence/actor       the actor is logged on no more updates than the critic (actor-update steps only)
  limit/<net>[/part]  AFTER <= limit * (1 + tolerance), whole network and each part
  after<=before/<net> clipping never increased a norm
  parts/<net>         under L2, sqrt(cnn^2 + mlp^2) equals the whole network's norm, BEFORE and AFTER
                      (needs no config): a mismatch is a measurement error, not a clipping failure
  clip_ratio/<net>    the logged ratio equals AFTER / BEFORE and, under whole-network norm clipping,
                      min(1, max_norm / BEFORE)
  alerts              no alert fired (events or results.json)
  finite              no NaN or inf in any tag
  actor_loss, q       |actor loss| and |Q| below the warn / fail thresholds
  frozen/<net>        the median update ratio (||step|| / ||weights||) over the run's last half is at
                      least --frozen-below (a healthy step is ~1e-3; a frozen network's is far below)
  dead/<net>/<part>   the part's BEFORE gradient norm is above --dead-below on some logged update
  finished            the run completed (results.json and DONE)
frozen and dead WARN by default and FAIL under --strict. A kept run (``av-td3 keep``: results.json and
overrides.yaml, no event files) has nothing to check: its verdict is SKIP, which fails nothing.

The package, one job per module: ``checks`` (every check above, pure functions of a run's scalars),
``runner`` (one run: load, read once, check, verdict), ``output`` (report text, verdict line, exit
status, JSON) and ``cli`` (arguments, --limit / --clipping, the parallel run loop).

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for unusable input (a
missing path, a truncated or corrupt event file, a directory without event files).
"""

from av_td3.analysis.validate.checks import DEFAULTS, FAIL, PASS, SKIP, WARN, Check, Options, RunReport
from av_td3.analysis.validate.output import exit_code, format_report, verdict_line
from av_td3.analysis.validate.runner import validate_path, validate_run
from av_td3.analysis.validate.cli import add_parser, given_limits, main, run  # last: ``run`` is the CLI's

__all__ = ["DEFAULTS", "FAIL", "PASS", "SKIP", "WARN", "Check", "Options", "RunReport", "add_parser", "exit_code",
           "format_report", "given_limits", "main", "run", "validate_path", "validate_run", "verdict_line"]

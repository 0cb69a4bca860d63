"""``av-td3``: the analysis and tooling commands (training is ``av-td3-train``).

    av-td3 validate PATH...        check clipping and training health from event files
    av-td3 compare DIR...          one table over multirun outputs, grouped, with interval estimates
    av-td3 report EXPERIMENT       run (or resume), validate and compare an ablation; write a report
    av-td3 evaluate RUN_DIR        a run's policy on routes of your choice: one row per route
    av-td3 keep RUN_DIR DEST       copy what of a run is worth keeping (results, csv, config) to DEST
    av-td3 carla-check             verify a CARLA server before launching a sweep
"""

from __future__ import annotations

import argparse
import importlib
import sys

from av_td3.helptext import plain

# command -> module exposing add_parser(subparsers) and run(args) -> exit code. Imported on use, so
# `av-td3 validate` does not pay for matplotlib or carla.
COMMANDS = {
    "validate": "av_td3.analysis.validate",
    "compare": "av_td3.analysis.compare",
    "report": "av_td3.analysis.report",
    "evaluate": "av_td3.evaluate_run",
    "keep": "av_td3.keep",
    "carla-check": "av_td3.carla_check",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after "--" is passed through untouched (Hydra overrides for `report`); argparse's
    # own "--" handling does not reach through subparsers.
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="av-td3", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                help=f"one of {', '.join(COMMANDS)} (av-td3 COMMAND --help for its options)")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module in COMMANDS.items():
        if wanted is None or name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                continue
            mod.add_parser(sub)
            sub.choices[name].set_defaults(run=mod.run)
    args = parser.parse_args(argv)
    if passthrough and not hasattr(args, "passthrough"):
        parser.error(f"{args.command} takes no arguments after --")
    if hasattr(args, "passthrough"):
        args.passthrough = passthrough
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

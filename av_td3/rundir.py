"""The run directory's layout, in one place: what the trainer writes and analysis reads. Nothing here
imports the rest of av_td3, so both sides depend on it and on nothing of each other's.

    RUN/.hydra/{config,hydra,overrides}.yaml   Hydra's record of the run (the composed config)
    RUN/events.out.tfevents.*                  TensorBoard, one file per segment (a resume adds one)
    RUN/train.csv, RUN/eval.csv                episodes (with how each ended) and evaluations, one row each
    RUN/checkpoint.pt                          the whole run state (agent, replay, RNG, counters)
    RUN/results.json                           written when a segment ends: status, step, evaluations
    RUN/videos/                                evaluation videos (trainer.eval_video, av-td3 evaluate --video)
    RUN/error.txt                              the message and traceback of a failed run
    RUN/.lock                                  held by the process training the run (run_lock.py)
    RUN/DONE                                   empty, written last by a finished run

A kept run (``av-td3 keep RUN DEST``) is what of a run is worth keeping in version control: results.json,
the csv files, any evaluate*.json, and the Hydra record flattened to DEST/config.yaml and
DEST/overrides.yaml (kilobytes; the checkpoint and event files stay behind). ``av-td3 compare`` reads it
as the run.
"""

from pathlib import Path

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
TRAIN_TABLE = "train"  # the logger's tables, each RUN/<table>.csv (table_file): one row per episode
EVAL_TABLE = "eval"  # one row per evaluation: its step and every eval/ metric
DONE = "DONE"
ERROR = "error.txt"
VIDEOS = "videos"
LOCK = ".lock"
KEPT_CONFIG = "config.yaml"
KEPT_OVERRIDES = "overrides.yaml"
TB = "tb"  # where runs written by early versions of av-td3 keep their event files


def table_file(table: str) -> str:
    """The file name of one of the logger's tables (``TRAIN_TABLE``, ``EVAL_TABLE``)."""
    return f"{table}.csv"

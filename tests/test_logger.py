"""The run's CSV tables: a row with more keys than the file's header widens it instead of shifting
values under other columns' names (a run resumed by a version that reports more metrics)."""

import csv

from av_td3.logger import RunLogger


def read(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_row_with_new_keys_widens_the_header_and_keeps_every_value_in_its_column(tmp_path):
    log = RunLogger(tmp_path)
    log.row("eval", {"step": 1, "success_rate": 0.5}, console=False)
    resumed = RunLogger(tmp_path, purge_step=2)  # a later segment of the same run
    resumed.row("eval", {"step": 2, "crash_rate": 0.25, "success_rate": 0.75}, console=False)
    resumed.row("eval", {"step": 3, "success_rate": 1.0}, console=False)
    log.close(), resumed.close()
    assert read(tmp_path / "eval.csv") == [{"step": "1", "success_rate": "0.5", "crash_rate": ""},
                                           {"step": "2", "success_rate": "0.75", "crash_rate": "0.25"},
                                           {"step": "3", "success_rate": "1.0", "crash_rate": ""}]

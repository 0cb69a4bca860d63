"""compare on runs that other TD3 code wrote: event files only, grouped by directory name, scored from
their scalars; and the wording that must not round a violation away."""

import numpy as np
import pytest
from test_validate import foreign_run
from torch.utils.tensorboard import SummaryWriter

from av_td3 import tags
from av_td3.analysis import compare as cmp
from av_td3.analysis import figures
from av_td3.analysis.stats import limit_value, percent
from av_td3.cli import main as cli_main


def add(path, tag, points):
    with SummaryWriter(str(path)) as w:
        for step, value in points.items():
            w.add_scalar(tag, value, step)


@pytest.fixture
def old_runs(tmp_path):
    """The reference's layout: one folder of event files per run, named <arm>_seed<N>."""
    root = tmp_path / "old_runs"
    for arm, base in (("clip_on", 100.0), ("clip_off", 300.0)):
        for seed in (0, 1):
            path = foreign_run(root / f"{arm}_seed{seed}", parts_factor=1.0)
            add(path, tags.EVAL_MEAN_REWARD, {500: base / 2, 1000: base + seed})
    # A run that logged no evaluation: scored by its last training episodes; it starts at step 1000.
    late = root / "clip_off_seed2"
    late.mkdir()
    add(late, tags.EPISODE_REWARD, {1000 + 10 * i: float(i) for i in range(30)})
    add(late, tags.EVAL_SUCCESS_RATE, {1000: 1.0, 1500: 1.0})
    return root


def test_compare_groups_foreign_runs_by_name_and_scores_them_from_events(old_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = cli_main(["compare", str(old_runs), "--group-by-name", r"(clip_o\w+)_seed\d+", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = cmp.compare([old_runs], out, "final/mean_reward", None, reps=200, plots=False,
                         group_by_name=r"(clip_o\w+)_seed\d+")
    rows = {r.run.path.name: r for r in result["rows"]}
    assert {r.status for r in rows.values()} == {"foreign"}
    assert {r.group for r in rows.values()} == {"clip_on", "clip_off"}
    assert rows["clip_on_seed1"].values["final/mean_reward"] == 101.0  # the last eval point
    assert rows["clip_on_seed1"].source == "eval/mean_reward (last)"
    assert rows["clip_off_seed2"].values["final/mean_reward"] == pytest.approx(np.mean(range(20, 30)))
    assert rows["clip_off_seed2"].source == "train/episode_reward (mean of last 10)"
    table = {e["group"]: e for e in result["table"]}
    assert table["clip_on"]["n"] == 2 and table["clip_on"]["mean"] == pytest.approx(100.5)
    assert table["clip_off"]["n"] == 3
    assert "| clip_on | 2 | 100 |" in printed and "eval/mean_reward (last)" in printed
    assert "FOREIGN" not in printed and "UNKNOWN" not in printed  # foreign runs are not problems
    assert (out / "runs.csv").is_file() and not list(old_runs.glob("*.csv"))  # nothing into the input


def test_a_foreign_run_that_starts_late_contributes_nothing_before_its_first_step(old_runs):
    rows = [r for r in cmp.collect([old_runs], group_by_name=r"(clip_off)_seed\d+") if r.group == "clip_off"]
    steps, grid = figures.group_grid(rows, tags.EVAL_SUCCESS_RATE)
    assert list(steps) == [1000, 1500] and grid.shape == (1, 2)  # only the late run logged success
    steps, grid = figures.group_grid(rows, tags.EVAL_MEAN_REWARD)
    assert list(steps) == [500, 1000] and len(grid) == 2  # the late run has no eval/mean_reward: absent


def test_default_output_is_beside_the_input_and_no_metric_is_an_error(old_runs, capsys):
    assert cmp.default_out([old_runs]) == old_runs.parent / "compare"
    code = cli_main(["compare", str(old_runs), "--metric", "final/avg_speed_kmh", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and "no run has final/avg_speed_kmh" in err and "eval/avg_speed_kmh" in err
    assert not (old_runs.parent / "compare").exists()  # nothing written for a failed compare
    with pytest.raises(ValueError, match="capturing group"):
        cmp.collect([old_runs], group_by_name=r"seed\d")


def test_percentages_and_maxima_keep_the_digits_that_matter():
    assert percent(199 / 200) == "99.5%" and percent(1 / 2000) == "0.05%" and percent(1e-7) == "1e-05%"
    assert percent(0.5) == "50%"
    assert percent(1.0) == "100%" and percent(0.0) == "0%"
    assert limit_value(1.0000002, 1.0) == "1.0000002" and limit_value(0.99999996, 1.0) == "0.99999996"
    assert limit_value(0.5321234, 1.0) == "0.5321" and limit_value(1.0, 1.0) == "1"


def test_a_run_from_before_the_outline_default_is_grouped_by_the_geometry_it_ran_with(tmp_path):
    """A run whose saved config lacks env.marking_geometry counted invasions on the straight-lane box
    (config/saved.py's EARLIER_VALUES): compare tells it apart from a run of the same overrides under the outline, and
    groups it with one that sets lane_frame; a config without the driving env's keys gets no such value."""
    from av_td3.analysis.runs import RunDir, RunRow

    def row(name, env):
        run = RunDir(tmp_path / name, [], config={"seed": 0, "env": env}, config_path=tmp_path / name / "c.yaml",
                     results={"step": 1}, status="finished")
        return RunRow(run, "(defaults)", 0, "finished")

    before, outline, lane_frame = (row("before", {"camera": "dashcam"}),
                                   row("outline", {"camera": "dashcam", "marking_geometry": "outline"}),
                                   row("lane_frame", {"camera": "dashcam", "marking_geometry": "lane_frame"}))
    cmp._split_by_composed_config([before, outline, lane_frame])
    assert before.group == lane_frame.group == "env.marking_geometry=lane_frame"
    assert outline.group == "env.marking_geometry=outline"
    assert "env.marking_geometry" not in row("gym", {"id": "Pendulum-v1"}).run.flat_config()

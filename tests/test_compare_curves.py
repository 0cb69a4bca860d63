"""compare's curves: every run contributes only where it has data; bands need two runs."""

import numpy as np
from test_validate import write_run
from torch.utils.tensorboard import SummaryWriter

from av_td3 import tags
from av_td3.analysis.compare import collect
from av_td3.analysis.figures import group_grid as _group_grid


def test_a_run_that_starts_late_contributes_nothing_before_its_first_step(tmp_path):
    write_run(tmp_path / "early", changes={tags.EVAL_MEAN_REWARD: {500: 10.0, 1000: 20.0}})
    late = write_run(tmp_path / "late", drop=(tags.EVAL_MEAN_REWARD,))
    with SummaryWriter(str(late / "tb")) as w:
        for step, value in ((1000, 100.0), (1500, 200.0)):
            w.add_scalar(tags.EVAL_MEAN_REWARD, value, step)
    rows = collect([tmp_path])
    steps, grid = _group_grid(rows, tags.EVAL_MEAN_REWARD)
    assert list(steps) == [500, 1000, 1500]
    by_run = {r.run.path.name: grid[i] for i, r in enumerate(rows)}
    assert np.isnan(by_run["late"][0]) and by_run["late"][1] == 100.0  # nothing at step 500
    assert np.isnan(by_run["early"][2])  # nor extended past its last point
    assert np.nanmean(grid, axis=0)[0] == 10.0  # the mean at 500 is the early run's alone

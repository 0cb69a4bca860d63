"""The report's figures, checked by their artists: one colour per group across figures, the baseline on
top, BEFORE/AFTER styles, labelled limits inside the axes, per-part panels, a legend outside the data,
named statistics, honest axes for constant data, optional smoothing."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from test_validate import NO_CLIPPING, REFERENCE, write_run  # noqa: E402

from av_td3 import tags  # noqa: E402
from av_td3.analysis import compare as cmp  # noqa: E402
from av_td3.analysis import figures  # noqa: E402

TIGHT = {"actor": {"mode": "norm", "max_norm": 1.0, "norm_type": 2.0},
         "critic": {"mode": "norm", "max_norm": 0.3, "norm_type": 2.0}}
ARMS = {"clipping=reference": REFERENCE, "clipping=tight": TIGHT, "clipping=none": NO_CLIPPING}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for arm, clipping in ARMS.items():
        for seed in (0, 1):
            run = write_run(root / f"{arm},seed={seed}", clipping=clipping,
                            changes={tags.EVAL_SUCCESS_RATE: {500: 0.5, 1000: 0.5}})  # constant
            (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([arm, f"seed={seed}"]))
    return cmp.collect([root])


def labelled_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_each_group_has_one_colour_in_every_figure_and_the_baseline_is_drawn_on_top(rows):
    colours = figures.palette(sorted({r.group for r in rows}), "clipping=none")
    assert colours["clipping=none"] == "#000000" and len(set(colours.values())) == 3
    fig = figures.curves(rows, colours, baseline="clipping=none")
    grads = figures.grad_norms(rows, colours, baseline="clipping=none")
    ret = fig.axes[0]
    by_group = {line.get_label(): line for line in labelled_lines(ret)}
    assert set(by_group) == set(ARMS)
    assert max(by_group, key=lambda g: by_group[g].get_zorder()) == "clipping=none"  # on top
    for line in labelled_lines(grads.axes[0]):
        group, when = line.get_label().rsplit(" ", 1)
        assert matplotlib.colors.to_hex(line.get_color()) == colours[group]  # same colour as in curves
        assert matplotlib.colors.to_hex(by_group[group].get_color()) == colours[group]
        assert line.get_linestyle() == {"BEFORE": "-", "AFTER": "--"}[when]


def test_grad_norms_has_part_panels_and_labels_every_groups_limit_inside_the_axes(rows):
    colours = figures.palette(sorted({r.group for r in rows}), "clipping=none")
    fig = figures.grad_norms(rows, colours, baseline="clipping=none")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["actor, whole network", "critic, whole network", "actor, CNN part", "critic, CNN part",
                      "actor, MLP part", "critic, MLP part"]
    critic = fig.axes[1]
    assert len(labelled_lines(critic)) == 2 * len(ARMS)  # BEFORE and AFTER per group
    texts = {t.get_text(): t for t in critic.texts}
    assert {"max_norm 10 (clipping=reference)", "max_norm 0.3 (clipping=tight)"} <= set(texts)
    low, high = critic.get_ylim()
    for t in texts.values():
        x, y = t.get_position()
        assert 0 < x < 1 and low < y < high  # inside the axes, at its limit
    actor_texts = [t.get_text() for t in fig.axes[0].texts]
    assert actor_texts == ["max_norm 1 (clipping=reference)", "max_norm 1 (clipping=tight)"]
    assert critic.get_ylabel() == "" and fig.axes[0].get_ylabel() == "global L2 gradient norm"


def test_legend_is_outside_every_axes_and_names_the_statistic(rows):
    colours = figures.palette(sorted({r.group for r in rows}))
    for fig in (figures.curves(rows, colours), figures.grad_norms(rows, colours)):
        fig.canvas.draw()
        (legend,) = fig.legends
        top = legend.get_window_extent().y1
        assert all(top <= ax.get_window_extent().y0 for ax in fig.axes)  # below every axes
        assert "mean over runs" in legend.get_title().get_text() and "95% bootstrap CI" in legend.get_title().get_text()
        assert all("(n=2)" in t.get_text() for t in legend.get_texts()[:3])
        assert min(t.get_fontsize() for t in legend.get_texts()) >= 8


def test_a_constant_series_gets_an_axis_that_says_so(rows):
    fig = figures.curves(rows, figures.palette(sorted({r.group for r in rows})))
    success = fig.axes[1]
    low, high = success.get_ylim()
    assert high - low >= 1.0  # not autoscaled into +-0.03 around 0.5
    assert any("constant: 0.5" in t.get_text() for t in success.texts)


def test_smoothing_keeps_the_raw_mean_as_a_faint_line(rows):
    colours = figures.palette(sorted({r.group for r in rows}))
    plain = figures.grad_norms(rows, colours).axes[1].get_lines()
    smooth = figures.grad_norms(rows, colours, smooth=5).axes[1].get_lines()
    faint = [line for line in smooth if line.get_alpha() == pytest.approx(0.3)]
    assert len(faint) == 2 * len(ARMS) and len(smooth) == len(plain) + len(faint)
    assert np.allclose(figures.rolling(np.array([1.0, 2.0, 3.0, np.nan, 5.0]), 3)[:3], [1.5, 2.0, 2.5])
    assert figures.rolling(np.arange(4.0), 9).shape == (4,)  # a window longer than the series


def test_aggregate_draws_intervals_profile_and_improvement(rows):
    scores = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([2.0, 3.0, 4.0]), "base": np.array([0.0, 1.0, 1.0])}
    colours = figures.palette(list(scores), "base")
    fig = figures.aggregate(scores, colours, "final/mean_reward", baseline="base", reps=200)
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title() == "performance profile (95% CI bands)"
    assert fig.axes[2].get_title() == "P(group > base)"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a (n=3)", "b (n=3)", "base (n=3)"]
    profile = {line.get_label(): line for line in labelled_lines(fig.axes[1])}
    assert profile["b"].get_ydata()[0] == 1.0 and profile["b"].get_ydata()[-1] == 0.0

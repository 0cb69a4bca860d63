"""The figures of ``av-td3 compare`` and ``av-td3 report``, built for print (PDF) and for the screen (PNG).

Shared by every figure:
- one colour per group, the same in every figure of a report (``palette``); the baseline is black and
  drawn last, on top of the others;
- the statistic is named: the line is the mean over a group's runs (geometric mean for log axes), the
  band its 95% percentile-bootstrap CI, drawn only where at least 2 runs have data; n per group in the
  legend. A run contributes only between its first and last logged step (nothing is extrapolated);
- the legend sits outside the axes, below them, in 8 pt type;
- ``smooth`` > 1 draws a centred rolling mean over that many logged points, with the raw mean kept as a
  faint line beneath it;
- a series that is constant is drawn on an axis that says so, not autoscaled into apparent variation.

``curves``        evaluation return and success rate per group
``grad_norms``    rows: whole network / CNN part / MLP part; columns: actor / critic. BEFORE clipping
                  solid, AFTER dashed, in the group's colour; each group's clip limit is a dotted line in
                  its colour, labelled inside the axes
``update_ratio``  ||step|| / ||weights|| per network
``aggregate``     rliable's aggregate view of the per-run scores: IQM and mean with 95% CIs per group,
                  the performance profile (fraction of runs scoring above tau, with CI bands) and
                  P(group > baseline) with its CI
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from av_td3 import tags
from av_td3.analysis.runs import RunDirError, RunRow, read_scalars


FONT = 8
BAND_REPS = 1000
PARTS = (None, *tags.PARTS)  # rows of grad_norms: the whole network, then each part
STYLE = {"BEFORE": "-", "AFTER": "--"}


def palette(groups: list[str], baseline: str | None = None) -> dict[str, str]:
    """group -> colour, stable for a report: the baseline black, the others tab10 (tab20 past 9) in
    sorted order."""
    import matplotlib

    others = [g for g in sorted(groups) if g != baseline]
    cmap = matplotlib.colormaps["tab10" if len(others) <= 9 else "tab20"]
    colours = {g: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, g in enumerate(others)}
    if baseline in groups:
        colours[baseline] = "#000000"
    return colours


def draw_order(groups: list[str], baseline: str | None) -> list[str]:
    """The baseline last, so it is drawn on top and never hidden."""
    return [g for g in sorted(groups) if g != baseline] + ([baseline] if baseline in groups else [])


def group_grid(members: list[RunRow], tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, runs x steps) of one tag over a group's runs. A run contributes only between its first and
    last logged step (NaN elsewhere: nothing is extrapolated, backwards or forwards)."""
    series = [read_scalars(r.run, [tag]).get(tag) for r in members]
    series = [s for s in series if s is not None and len(s[0])]
    if not series:
        return None
    steps = np.unique(np.concatenate([s[0] for s in series]))
    return steps, np.array([np.interp(steps, s[0], s[1], left=np.nan, right=np.nan) for s in series])


def bootstrap_band(grid: np.ndarray, reps: int = BAND_REPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile-bootstrap band of the mean over runs, per step."""
    if len(grid) < 2:
        return grid[0], grid[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(grid), (reps, len(grid)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps where a resample has no run with data
        means = np.nanmean(grid[idx], axis=1)
        return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


def rolling(y: np.ndarray, window: int) -> np.ndarray:
    """Centred rolling mean over ``window`` points, NaNs skipped (a point with no data stays NaN)."""
    window = min(window, len(y))  # np.convolve's "same" is max(len(y), window) long
    if window <= 1:
        return y
    ok = np.isfinite(y)
    kernel = np.ones(window)
    total = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(all="ignore"):
        return np.where(ok, total / count, np.nan)


def plot_band(ax, steps: np.ndarray, grid: np.ndarray, colour: str, style: str = "-", log: bool = False,
              smooth: int = 1, zorder: float = 2.0, label: str | None = None):
    """The mean over runs where any run has data and its 95% bootstrap band where at least two do; with
    ``smooth`` > 1 the raw mean stays as a faint line under the smoothed one. Returns the main line."""
    n = np.sum(~np.isnan(grid), axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps with no run: NaN, as meant
        data = np.log10(grid) if log else grid
        mean = np.nanmean(data, axis=0)
        low, high = bootstrap_band(data)
    if smooth > 1:
        raw = 10 ** mean if log else mean
        ax.plot(steps, raw, style, color=colour, lw=0.6, alpha=0.3, zorder=zorder - 0.5)
        mean, low, high = rolling(mean, smooth), rolling(low, smooth), rolling(high, smooth)
    if log:
        mean, low, high = 10 ** mean, 10 ** low, 10 ** high
    (line,) = ax.plot(steps, mean, style, color=colour, lw=1.3, zorder=zorder, label=label)
    two = n >= 2
    if two.any():
        ax.fill_between(steps, np.where(two, low, np.nan), np.where(two, high, np.nan), color=colour,
                        alpha=0.15, lw=0, zorder=zorder - 1)
    return line


def honest_limits(ax, values: list[np.ndarray], log: bool = False) -> bool:
    """A constant series gets an axis that shows it is constant (and says so) instead of matplotlib's
    autoscaled +-few-percent, which reads as variation. Returns whether the data were constant."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    if not len(finite) or finite.max() != finite.min():
        return False
    v = float(finite[0])
    if log and v > 0:
        ax.set_ylim(v / 10, v * 10)
    else:
        half = max(abs(v) * 0.5, 1.0)
        ax.set_ylim(v - half, v + half)
    ax.text(0.5, 0.5, f"constant: {v:.4g} in every run and step", transform=ax.transAxes, ha="center",
            va="bottom", fontsize=FONT, color="0.3")
    return True


def _legend_below(fig, handles, labels, title: str | None = None) -> None:
    """The legend under the axes (never over data), the axes laid out in the space above it."""
    if not labels:  # nothing was drawn (runs without the scalars): no legend to lay out
        fig.tight_layout()
        return
    ncol = min(len(labels), 3)
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=FONT,
               title=title, title_fontsize=FONT, frameon=False)
    rows = math.ceil(len(labels) / ncol) + (1 if title else 0)
    height = (0.2 * rows + 0.25) / fig.get_figheight()  # ~0.2 in per 8 pt legend row, plus margins
    fig.tight_layout(rect=(0, min(height, 0.5), 1, 1))


def _steps_axis(ax) -> None:
    """Environment steps as 20k, 1.5M: tick labels that never run into each other."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def fmt(x, _):
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(x) >= scale:
                return f"{x / scale:g}{suffix}"
        return f"{x:g}"

    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))


def _group_handles(order: list[str], colours: dict[str, str], n: dict[str, int]):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[g], lw=2) for g in order]
    return handles, [f"{g} (n={n.get(g, 0)})" for g in order]


def curves(rows: list[RunRow], colours: dict[str, str], baseline: str | None = None, smooth: int = 1):
    """Evaluation return and success rate per group over environment steps."""
    import matplotlib.pyplot as plt

    groups = sorted({r.group for r in rows})
    members = {g: [r for r in rows if r.group == g] for g in groups}
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4))
    n: dict[str, int] = {}
    for ax, tag, label in zip(axes, (tags.EVAL_MEAN_REWARD, tags.EVAL_SUCCESS_RATE),
                              ("evaluation return", "evaluation success rate")):
        plotted = []
        for z, g in enumerate(draw_order(groups, baseline)):
            found = group_grid(members[g], tag)
            if found is None:
                continue
            plot_band(ax, *found, colour=colours[g], smooth=smooth, zorder=2 + z, label=g)
            n[g] = max(n.get(g, 0), len(found[1]))
            plotted.append(found[1].ravel())
        honest_limits(ax, plotted)
        ax.set_title(label, fontsize=FONT + 1)
        ax.set_xlabel("environment step", fontsize=FONT)
        _steps_axis(ax)
        ax.set_ylabel("mean over runs", fontsize=FONT)
        ax.tick_params(which="both", labelsize=FONT)
        ax.grid(alpha=0.3)
    order = [g for g in draw_order(groups, baseline) if g in n]
    _legend_below(fig, *_group_handles(order, colours, n),
                  title="line: mean over runs; band: 95% bootstrap CI of the mean (where n >= 2)"
                        + (f"; smoothed over {smooth} points" if smooth > 1 else ""))
    return fig


def _limit(run, net: str, part: str | None) -> float | None:
    try:
        return run.clip_limit(net, part)
    except RunDirError:  # an invalid clipping config: that run is listed with its problem elsewhere
        return None


def grad_norms(rows: list[RunRow], colours: dict[str, str], baseline: str | None = None, smooth: int = 1):
    """BEFORE / AFTER clipping gradient norms, whole network and each part, with each group's limits."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = sorted({r.group for r in rows})
    members = {g: [r for r in rows if r.group == g] for g in groups}
    fig, axes = plt.subplots(len(PARTS), len(tags.NETWORKS), figsize=(7.2, 2.3 * len(PARTS) + 0.8),
                             squeeze=False, sharex=True)
    n: dict[str, int] = {}
    for row, part in enumerate(PARTS):
        for col, net in enumerate(tags.NETWORKS):
            ax = axes[row][col]
            plotted = []
            for z, g in enumerate(draw_order(groups, baseline)):
                for when in ("BEFORE", "AFTER"):  # AFTER above BEFORE: a capped AFTER is never hidden
                    found = group_grid(members[g], tags.grad_norm(net, when, part))
                    if found is None:
                        continue
                    plot_band(ax, *found, colour=colours[g], style=STYLE[when], log=True, smooth=smooth,
                              zorder=2 + 2 * z + (when == "AFTER"), label=f"{g} {when}")
                    n[g] = max(n.get(g, 0), len(found[1]))
                    plotted.append(found[1].ravel())
            constant = honest_limits(ax, plotted, log=True)
            if not constant and plotted:
                ax.set_yscale("log")
            _draw_limits(ax, members, draw_order(groups, baseline), colours, net, part)
            where = "whole network" if part is None else f"{part.upper()} part"
            ax.set_title(f"{net}, {where}", fontsize=FONT + 1)
            if col == 0:
                ax.set_ylabel("global L2 gradient norm", fontsize=FONT)
            if row == len(PARTS) - 1:
                ax.set_xlabel("environment step", fontsize=FONT)
            _steps_axis(ax)
            ax.tick_params(which="both", labelsize=FONT)
            ax.grid(alpha=0.3)
    order = [g for g in draw_order(groups, baseline) if g in n]
    handles, labels = _group_handles(order, colours, n)
    handles += [Line2D([], [], color="0.3", ls=STYLE[w]) for w in ("BEFORE", "AFTER")]
    handles += [Line2D([], [], color="0.3", ls=":")]
    labels += ["before clipping", "after clipping", "clip limit (max_norm)"]
    _legend_below(fig, handles, labels, title="line: geometric mean over runs; band: 95% bootstrap CI "
                                              "(where n >= 2)" + (f"; smoothed over {smooth} points"
                                                                  if smooth > 1 else ""))
    return fig


def _draw_limits(ax, members, order, colours, net: str, part: str | None) -> None:
    """Each group's limit as a dotted line in its colour, labelled inside the axes at the right. A limit
    every group shares is drawn once, in grey, labelled "all groups"."""
    limits = {g: _limit(members[g][0].run, net, part) for g in order if members[g]}
    limits = {g: v for g, v in limits.items() if v is not None}
    if not limits:
        return
    shared = len(set(limits.values())) == 1 and len(limits) == len(order) and len(order) > 1
    drawn = {}
    for g, v in limits.items():
        colour = "0.35" if shared else colours[g]
        who = "all groups" if shared else g
        if (v, who) in drawn:
            continue
        drawn[(v, who)] = True
        ax.axhline(v, color=colour, lw=1.0, ls=":", zorder=10)
        ax.text(0.98, v, f"max_norm {v:g} ({who})", transform=ax.get_yaxis_transform(), ha="right",
                va="bottom", fontsize=FONT - 1, color=colour, zorder=11, clip_on=True)
        bottom, top = ax.get_ylim()
        if not bottom < v < top:  # keep every limit inside the axes
            ax.set_ylim(min(bottom, v / 2 if ax.get_yscale() == "log" else v - abs(v) * 0.1),
                        max(top, v * 2 if ax.get_yscale() == "log" else v + abs(v) * 0.1))


def update_ratio(rows: list[RunRow], colours: dict[str, str], baseline: str | None = None, smooth: int = 1):
    """||step|| / ||weights|| per network (None when no run logged it)."""
    import matplotlib.pyplot as plt

    groups = sorted({r.group for r in rows})
    members = {g: [r for r in rows if r.group == g] for g in groups}
    fig, axes = plt.subplots(1, len(tags.NETWORKS), figsize=(7.2, 3.2))
    n: dict[str, int] = {}
    for ax, net in zip(axes, tags.NETWORKS):
        for z, g in enumerate(draw_order(groups, baseline)):
            found = group_grid(members[g], tags.update_ratio(net))
            if found is not None:
                plot_band(ax, *found, colour=colours[g], log=True, smooth=smooth, zorder=2 + z, label=g)
                n[g] = max(n.get(g, 0), len(found[1]))
        ax.set_yscale("log")
        ax.set_title(f"{net}: ||update|| / ||weights||", fontsize=FONT + 1)
        ax.set_xlabel("environment step", fontsize=FONT)
        _steps_axis(ax)
        ax.tick_params(which="both", labelsize=FONT)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("update ratio", fontsize=FONT)
    if not n:
        plt.close(fig)
        return None
    order = [g for g in draw_order(groups, baseline) if g in n]
    _legend_below(fig, *_group_handles(order, colours, n),
                  title="line: geometric mean over runs; band: 95% bootstrap CI (where n >= 2)")
    return fig


def aggregate(scores: dict[str, np.ndarray], colours: dict[str, str], metric: str, baseline: str | None = None,
              reps: int = 2000):
    """rliable's aggregate view of per-run scores: IQM and mean with 95% stratified-bootstrap CIs, the
    performance profile with CI bands, and P(group > baseline) with CIs."""
    import matplotlib.pyplot as plt
    from rliable import library as rly

    from av_td3.analysis import stats

    scores = {g: np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for g, v in scores.items()}
    scores = {g: v for g, v in scores.items() if len(v)}
    if not scores:
        return None
    order = draw_order(list(scores), baseline)
    summary = stats.summarize(scores, reps=reps)
    panels = 3 if baseline in scores and len(scores) > 1 else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels + 1.0, 0.4 * len(order) + 2.4))
    ax = axes[0]
    for i, g in enumerate(order):
        s = summary[g]
        for dy, (point, ci, marker) in zip((0.15, -0.15), ((s.iqm, s.iqm_ci, "o"), (s.mean, s.mean_ci, "s"))):
            ax.errorbar(point, i + dy, xerr=[[point - ci[0]], [ci[1] - point]], fmt=marker, color=colours[g],
                        ms=4, capsize=3, lw=1.2)
    ax.set_yticks(range(len(order)), [f"{g} (n={summary[g].n})" for g in order], fontsize=FONT)
    ax.set_title(f"{metric}", fontsize=FONT + 1)
    ax.set_xlabel("IQM (circle), mean (square), 95% stratified-bootstrap CI", fontsize=FONT)
    ax.tick_params(which="both", labelsize=FONT)
    ax.grid(alpha=0.3, axis="x")

    ax = axes[1]
    everything = np.concatenate(list(scores.values()))
    lo, hi = float(everything.min()), float(everything.max())
    taus = np.linspace(lo - 1e-9, hi + 1e-9 if hi > lo else lo + 1.0, 101)
    np.random.seed(0)  # rliable's bootstrap draws from NumPy's global generator
    profiles, cis = rly.create_performance_profile({g: v[:, None] for g, v in scores.items()}, taus, reps=reps)
    for z, g in enumerate(order):
        ax.plot(taus, profiles[g], color=colours[g], lw=1.3, zorder=2 + z, label=g)
        ax.fill_between(taus, cis[g][0], cis[g][1], color=colours[g], alpha=0.15, lw=0, zorder=1 + z)
    ax.set_xlabel("threshold tau", fontsize=FONT)
    ax.set_ylabel("fraction of runs scoring > tau", fontsize=FONT)
    ax.set_title("performance profile (95% CI bands)", fontsize=FONT + 1)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(which="both", labelsize=FONT)
    ax.grid(alpha=0.3)

    if panels == 3:
        ax = axes[2]
        others = [g for g in order if g != baseline]
        for i, g in enumerate(others):
            imp = stats.probability_of_improvement(scores[g], scores[baseline], reps=reps)
            ax.errorbar(imp.probability, i, xerr=[[imp.probability - imp.ci[0]], [imp.ci[1] - imp.probability]],
                        fmt="o", color=colours[g], ms=4, capsize=3, lw=1.2)
        ax.axvline(0.5, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(range(len(others)), others, fontsize=FONT)
        ax.set_xlim(-0.05, 1.05)
        ax.set_title(f"P(group > {baseline})", fontsize=FONT + 1)
        ax.set_xlabel("P(improvement), 95% bootstrap CI\n(0.5 = no difference)", fontsize=FONT)
        ax.tick_params(which="both", labelsize=FONT)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def save(fig, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths


def write_all(rows: list[RunRow], out: Path, metric: str, scores: dict[str, np.ndarray],
              baseline: str | None = None, smooth: int = 1, reps: int = 2000) -> list[Path]:
    """Every figure of a comparison into ``out`` (PNG and PDF); ``scores``: group -> per-run ``metric``
    (``compare.group_scores``, what the table summarises). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = palette(sorted({r.group for r in rows}), baseline)
    written: list[Path] = []
    for name, fig in (("curves", curves(rows, colours, baseline, smooth)),
                      ("grad_norms", grad_norms(rows, colours, baseline, smooth)),
                      ("update_ratio", update_ratio(rows, colours, baseline, smooth)),
                      ("aggregate", aggregate(scores, colours, metric, baseline, reps))):
        if fig is not None:
            written += save(fig, out / name)
    plt.close("all")
    return written

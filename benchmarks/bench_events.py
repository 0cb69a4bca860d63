"""Reading event files: ``av-td3 validate`` (our reader + every check) against tbparse and TensorBoard's
EventAccumulator, on the same runs, in seconds per run.

    python benchmarks/bench_events.py                 # 5 runs x 40 tags x 10k points (written once)
    python benchmarks/bench_events.py --runs 50 --baseline-runs 5   # the sweep figure

Runs are written once with ``SummaryWriter.add_scalar`` (the trainer's writer) as a multirun directory of
run directories (.hydra/config.yaml with the reference clipping, tb/, results.json, DONE) and reused
from ``--dir`` (default: the system temp dir). Writing takes ~30 s per run per core, in parallel.
The baselines are timed on the first ``--baseline-runs`` runs (default: all): their cost per run is
the same on every run.

It also times the CRC32C check alone (both CRCs of every record of the first run): our vectorised
table-driven crc32c (``av_td3.analysis.events``) against the ``crc32c`` library (hardware CRC32C, one
call per record: TFRecords are ~70 bytes, so the call overhead dominates), checking they agree.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from av_td3 import tags
from av_td3.analysis import validate
from av_td3.analysis.events import event_files, read_scalars
from av_td3.analysis.runs import find_run_paths
from av_td3.helptext import plain

CLIPPING = {"actor": {"mode": "norm", "max_norm": 1.0, "norm_type": 2.0},
            "critic": {"mode": "norm", "max_norm": 10.0, "norm_type": 2.0}}


def tag_list(n: int) -> list[str]:
    """The trainer's tags (gradients, losses, rewards, eval), padded with extra metrics to ``n``."""
    real = [t for net in tags.NETWORKS for t in tags.all_grad_tags(net)]
    real += [tags.ACTOR_LOSS, tags.CRITIC_LOSS, tags.Q1, tags.Q2, tags.EPISODE_REWARD, tags.EPISODE_LENGTH,
             tags.STEPS_PER_SECOND, tags.EXPLORATION_NOISE, tags.EVAL_MEAN_REWARD, tags.EVAL_SUCCESS_RATE,
             tags.EVAL_AVG_COLLISIONS, tags.EVAL_AVG_LANE_INVASIONS, tags.EVAL_AVG_EPISODE_LENGTH]
    real += [tags.reward_component(c)
             for c in ("efficiency", "lane_keeping", "comfort", "safety", "progress")]
    return (real + [f"custom/metric_{i}" for i in range(max(0, n - len(real)))])[:n]


def write_run(path: Path, n_tags: int, points: int, seed: int) -> None:
    """One finished run whose gradients obey its clipping (so validate passes: every check runs)."""
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(seed)
    steps = 10_000 + 10 * np.arange(points)
    values: dict[str, np.ndarray] = {}
    for net in tags.NETWORKS:
        parts = rng.lognormal(0, 1, (2, points)) * (1 if net == "actor" else 8)
        before = np.hypot(*parts)
        coef = np.minimum(1.0, CLIPPING[net]["max_norm"] / (before + 1e-6))
        values |= {tags.grad_norm(net, "BEFORE"): before, tags.grad_norm(net, "AFTER"): before * coef,
                   tags.clip_ratio(net): coef, tags.clipped(net): (coef < 1).astype(float)}
        for part, norm in zip(tags.PARTS, parts):
            values[tags.grad_norm(net, "BEFORE", part)] = norm
            values[tags.grad_norm(net, "AFTER", part)] = norm * coef
    for tag in tag_list(n_tags):
        values.setdefault(tag, rng.normal(0, 50, points))
    (path / ".hydra").mkdir(parents=True, exist_ok=True)
    config = {"seed": seed, "clipping": CLIPPING, "agent": {"policy_delay": 2},
              "trainer": {"total_steps": int(steps[-1]), "learning_starts": 10_000, "log_every_updates": 10}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    with SummaryWriter(str(path / "tb")) as w:
        for i, step in enumerate(steps.tolist()):
            for tag in tag_list(n_tags):  # interleaved by step, as a trainer writes them
                w.add_scalar(tag, float(values[tag][i]), step)
    (path / "results.json").write_text(json.dumps({"status": "finished", "step": int(steps[-1]),
                                                   "total_steps": int(steps[-1]), "alerts": {},
                                                   "nonfinite_skips": {"actor": 0, "critic": 0}}))
    (path / "DONE").touch()  # last: marks a complete (reusable) run


def prepare(root: Path, runs: int, n_tags: int, points: int, jobs: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    paths = [root / f"seed={i}" for i in range(runs)]
    todo = [p for p in paths if not (p / "DONE").exists()]
    if todo:
        print(f"writing {len(todo)} runs of {n_tags} tags x {points} points into {root} "
              f"({jobs} processes)...")
        t0 = time.perf_counter()
        for p in todo:  # a run left half-written by an interrupted earlier call is rewritten
            for f in event_files(p / "tb"):
                f.unlink()
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(write_run, todo, [n_tags] * len(todo), [points] * len(todo),
                          [int(p.name.split("=")[1]) for p in todo]))
        print(f"  {time.perf_counter() - t0:.0f} s")
    return paths


def crc_figures(path: Path, reps: int = 10) -> dict[str, float] | None:
    """Best-of-``reps`` seconds for both CRCs of every record in ``path``: ours and the crc32c library's."""
    try:
        import crc32c
    except ImportError:
        print("crc32c is not installed (pip install -e '.[bench]'): no CRC comparison")
        return None
    from av_td3.analysis import events as ev

    buf = path.read_bytes()
    arr = np.zeros(ev._LEAD + len(buf) + ev._TRAIL, np.uint8)
    arr[ev._LEAD:ev._LEAD + len(buf)] = np.frombuffer(buf, np.uint8)
    offs = ev._frame(buf)
    lens = np.ascontiguousarray(arr[(offs + ev._LEAD)[:, None] + np.arange(8)]).view("<u8").ravel().astype(np.int64)
    view, fn = memoryview(buf), crc32c.crc32c

    def ours():
        return (ev._masked_crc32c(arr, offs + ev._LEAD, np.full(len(offs), 8)),
                ev._masked_crc32c(arr, offs + 12 + ev._LEAD, lens))

    def library():
        o, n = offs.tolist(), lens.tolist()
        raw = (np.fromiter(map(fn, (view[x:x + 8] for x in o)), np.uint32, len(o)),
               np.fromiter(map(fn, (view[x + 12:x + 12 + k] for x, k in zip(o, n))), np.uint32, len(o)))
        return tuple(((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(0xA282EAD8) for c in raw)

    assert all(np.array_equal(a, b) for a, b in zip(ours(), library())), "the two CRC32C disagree"
    best = {name: min(timed(f) for _ in range(reps)) for name, f in (("ours", ours), ("crc32c", library))}
    print(f"\nCRC32C of {len(offs)} records ({len(buf) / 1e6:.1f} MB), both CRCs each, best of {reps}: "
          f"ours {best['ours'] * 1e3:.1f} ms, crc32c {crc32c.__version__} (hardware "
          f"{bool(crc32c.hardware_based)}) {best['crc32c'] * 1e3:.1f} ms: ratio crc32c / ours "
          f"{best['crc32c'] / best['ours']:.2f}")
    return best


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tags", type=int, default=40)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="cache directory for the written runs")
    ap.add_argument("--baseline-runs", type=int, help="time tbparse / EventAccumulator on this many runs")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes writing the runs")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.gettempdir()) / f"av_td3_bench_events_{args.tags}x{args.points}"
    paths = prepare(root, args.runs, args.tags, args.points, args.jobs)
    size = sum(f.stat().st_size for p in paths for f in event_files(p / "tb"))
    for p in paths:  # the OS file cache warm for every reader alike
        for f in event_files(p / "tb"):
            f.read_bytes()
    multi = paths[0].parent if args.runs == len(find_run_paths(root)) else None
    print(f"{args.runs} runs, {args.tags} tags x {args.points} points each, {size / 1e6 / args.runs:.1f} MB "
          f"of events per run, {os.cpu_count()} CPUs")

    validate.validate_path(paths[0], validate.Options())  # imports and first-call costs, untimed
    results: dict[str, float] = {}
    reports = []
    t = timed(lambda: reports.extend(validate.validate_path(p, validate.Options()) for p in paths))
    results["av-td3 validate (read + all checks)"] = t / len(paths)
    verdicts = {r.verdict for r in reports}
    results["av-td3 reader only (read_scalars)"] = timed(
        lambda: [read_scalars(event_files(p / "tb")) for p in paths]) / len(paths)
    if multi is not None and args.runs > 1:
        jobs = os.cpu_count() or 1  # what validate's default does for 4+ runs
        with contextlib.redirect_stdout(io.StringIO()):
            t = timed(lambda: validate.main([str(multi), "--quiet", "--jobs", str(jobs)]))
        results[f"av-td3 validate MULTI --jobs {jobs} (wall / runs)"] = t / len(paths)

    base = paths[:args.baseline_runs or len(paths)]
    from tbparse import SummaryReader

    results["tbparse SummaryReader(...).scalars"] = timed(
        lambda: [SummaryReader(str(p / "tb"), event_types={"scalars"}).scalars for p in base]) / len(base)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def accumulate(p: Path) -> None:
        ea = EventAccumulator(str(p / "tb"), size_guidance={"scalars": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:  # to arrays, like ours
            events = ea.Scalars(tag)
            np.array([e.step for e in events]), np.array([e.value for e in events])

    results["EventAccumulator (size_guidance 0) + arrays"] = timed(
        lambda: [accumulate(p) for p in base]) / len(base)

    ours = results["av-td3 validate (read + all checks)"]
    print(f"\nverdicts: {sorted(verdicts)}; baselines timed on {len(base)} run(s)")
    print(f"{'reader':52s} {'s / run':>9s} {'/ validate':>11s}")
    for name, sec in results.items():
        print(f"{name:52s} {sec:9.3f} {sec / ours:11.2f}")
    crc_figures(event_files(paths[0] / "tb")[0])


if __name__ == "__main__":
    main()

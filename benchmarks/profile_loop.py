"""Where a training run's wall time goes: timers around each phase of the real Trainer loop.

    python benchmarks/profile_loop.py 30000                       # +experiment=learn_to_drive, 30k frames
    python benchmarks/profile_loop.py 30000 agent.encoder=separate
    python benchmarks/profile_loop.py 12000 +experiment=drive_from_camera    # another experiment

Runs ``+experiment=learn_to_drive`` (or the one given; plus any overrides) to the given number of env
frames in a temporary run dir, one torch thread, with the allocator set as av-td3-train sets it, and
prints the wall time and,
per phase (update, replay sampling, env steps of training and evaluation, acting, evaluations,
checkpoints, logging, replay writes), the seconds, calls and milliseconds per call. Phases nest
(evaluations hold env steps and actions), so their shares need not add up to the wall time. The timers
cost ~1 us per call. cProfile would inflate the Python-heavy phases; this does not.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_learning  # noqa: E402  (the same composition as the learning benchmark)

from av_td3 import replay, run_state, trainer, update_report  # noqa: E402
from av_td3.agents import td3  # noqa: E402
from av_td3.allocator import tune_allocator  # noqa: E402
from av_td3.envs import highway  # noqa: E402

PHASES = [(td3.TD3Agent, "update", "update"), (replay.ReplayBuffer, "sample", "replay sample"),
          (highway.HighwayDrivingEnv, "step", "env step (train + eval)"),
          (td3.TD3Agent, "act", "act (train + eval)"), (trainer.Trainer, "_evaluate", "evaluations"),
          (run_state.RunState, "save", "checkpoints"), (update_report.UpdateReporter, "report", "update logging"),
          (replay.ReplayBuffer, "add", "replay add")]


def timed(owner, name: str, label: str, seconds: collections.Counter, calls: collections.Counter) -> None:
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - t0
            calls[label] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        raise SystemExit(__doc__)
    frames, overrides = int(sys.argv[1]), sys.argv[2:]
    experiment = next((o for o in overrides if o.startswith("+experiment=")), "+experiment=learn_to_drive")
    overrides = [o for o in overrides if o != experiment]
    torch.set_num_threads(1)
    tune_allocator()
    seconds, calls = collections.Counter(), collections.Counter()
    for owner, name, label in PHASES:
        timed(owner, name, label, seconds, calls)
    raw, cfg = bench_learning.compose([experiment, "device=cpu", "torch_threads=1",
                                       "trainer.progress_bar=false", f"trainer.total_steps={frames}", *overrides])
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        trainer.Trainer(raw, cfg, Path(run_dir)).run()
        wall = time.perf_counter() - t0
    print(f"{frames} env frames of {experiment} {' '.join(overrides)}: wall {wall:.1f} s")
    for label, s in seconds.most_common():
        print(f"  {label:24s} {s:7.1f} s ({100 * s / wall:4.1f}%)  {calls[label]:7d} calls  "
              f"{1e3 * s / calls[label]:7.2f} ms per call")


if __name__ == "__main__":
    main()

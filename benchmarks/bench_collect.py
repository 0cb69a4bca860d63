"""Parallel collection (trainer.num_envs): env frames per second of whole training runs, train loop
(acting, replay writes, updates, evaluations) included, for num_envs 1, 2 and 4, side by side.

    python benchmarks/bench_collect.py                        # light and heavy, 2 rounds (~6 min)
    python benchmarks/bench_collect.py --scenarios heavy --rounds 3

Each arm is a real ``av-td3-train +experiment=smoke`` run (36x36 images, the smoke networks) of
``--steps`` frames, ``--learning-starts`` of them warm-up, into a temporary directory; num_envs > 1 runs
its envs in worker processes (env.worker=true), num_envs=1 as by default (in the trainer's process) and
also in one worker, so the worker's own cost shows. Rounds alternate the arms; the figure is frames /
the run's wall time (results.json), the median over rounds, and the ratio against num_envs=1 in-process
per round. With small networks the simulator dominates, which is where parallel envs pay (a GPU
learner); on 2 cores, more than 2 envs compete with the learner for the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from av_td3.helptext import plain
from common import machine

ARMS = {"1 env": ["trainer.num_envs=1"], "1 env, worker": ["trainer.num_envs=1", "env.worker=true"],
        "2 envs": ["trainer.num_envs=2", "env.worker=true"], "4 envs": ["trainer.num_envs=4", "env.worker=true"]}


def run(scenario: str, arm: list[str], steps: int, learning_starts: int, root: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=root))
    subprocess.run([sys.executable, "-m", "av_td3.train", "+experiment=smoke", f"scenario={scenario}",
                    f"trainer.total_steps={steps}", f"trainer.learning_starts={learning_starts}",
                    f"trainer.eval_every={steps}", "trainer.progress_bar=false", "torch_threads=1", *arm,
                    f"hydra.run.dir={out}"], check=True, capture_output=True, timeout=1800)
    results = json.loads((out / "results.json").read_text())
    return results["step"] / results["wall_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=["light", "heavy"])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--learning-starts", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print(f"machine: {machine(1)}")
    print(f"+experiment=smoke, {a.steps} frames ({a.learning_starts} warm-up), torch_threads=1, {a.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in a.scenarios:
            rates: dict[str, list[float]] = {name: [] for name in ARMS}
            for _ in range(a.rounds):
                for name, arm in ARMS.items():
                    rates[name].append(run(scenario, arm, a.steps, a.learning_starts, Path(tmp)))
            base = np.array(rates["1 env"])
            cells = [f"{name} {np.median(r):6.1f}" + ("" if name == "1 env" else f" ({np.median(np.array(r) / base):.2f}x)")
                     for name, r in rates.items()]
            print(f"{scenario:6s} frames/s: " + "   ".join(cells))


if __name__ == "__main__":
    main()

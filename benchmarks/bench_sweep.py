"""Sweep scaling: two smoke-scale jobs run in parallel with ``hydra/launcher=joblib`` against the same two
jobs one after the other (Hydra's basic launcher), wall clock of the whole ``av-td3-train -m`` command.
Target: parallel <= 0.6x sequential on 2 cores.

Each job gets its share of the cores (``torch_threads=0``): 2 threads each when sequential on 2 cores,
1 each when parallel. The order alternates between rounds; medians are reported.

    python benchmarks/bench_sweep.py [--rounds 2] [--steps 600]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from av_td3 import available_cores
from common import median


def sweep(sweep_dir: Path, parallel: bool, steps: int) -> float:
    cmd = [sys.executable, "-m", "av_td3.train", "-m", "+experiment=smoke", "seed=0,1",
           f"trainer.total_steps={steps}", "trainer.progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]
    if parallel:
        cmd += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    assert len(list(sweep_dir.glob("*/DONE"))) == 2, f"{sweep_dir}: a job did not finish"
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600, help="trainer.total_steps of each job (smoke: 600)")
    a = ap.parse_args()
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = ("sequential", "parallel") if r % 2 == 0 else ("parallel", "sequential")
            for mode in order:
                times[mode].append(sweep(Path(tmp) / f"{mode}{r}", mode == "parallel", a.steps))
                print(f"round {r}: {mode:10s} {times[mode][-1]:6.1f} s", flush=True)
    seq, par = median(times["sequential"]), median(times["parallel"])
    print(f"{available_cores()} cores; two smoke jobs ({a.steps} steps each), whole `av-td3-train -m` command")
    print(f"sequential (basic launcher)        {seq:6.1f} s")
    print(f"parallel (joblib, n_jobs=2)        {par:6.1f} s  = {par / seq:.2f}x sequential (target <= 0.6x)")


if __name__ == "__main__":
    main()

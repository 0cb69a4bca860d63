"""Sweep scaling: two smoke-scale jobs run in parallel with ``hydra/launcher=joblib`` against the same two
jobs one after the other (Hydra's basic launcher), wall clock of the whole ``av-td3-train -m`` command.
Target: parallel <= 0.6x sequential on 2 cores.

Each job gets its share of the cores (``torch_threads=0``): 2 threads each when sequential on 2 cores,
1 each when parallel. The order alternates between rounds; medians are reported, with each sweep's
timeline read from its jobs' logs: when the first job started training (process start-up, imports,
env and agent construction), how long the jobs trained, and how long the command ran after the last
job finished (interpreter shutdown). The start-up runs once in either mode, so the last line gives
the ratio that longer jobs tend to: one job's training beside another over two jobs' training alone.

    python benchmarks/bench_sweep.py [--rounds 2] [--steps 600]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from av_td3 import available_cores
from common import median

LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


def log_times(log: Path, marker: str) -> list[float]:
    """Epoch seconds of the job log's lines that contain ``marker``."""
    out = []
    for line in log.read_text().splitlines():
        m = LOG_TIME.match(line)
        if m and marker in line:
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1e3)
    return out


def sweep(sweep_dir: Path, parallel: bool, steps: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "av_td3.train", "-m", "+experiment=smoke", "seed=0,1",
           f"trainer.total_steps={steps}", "trainer.progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]
    if parallel:
        cmd += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    t0 = time.time()
    subprocess.run(cmd, check=True, capture_output=True)
    end = time.time()
    assert len(list(sweep_dir.glob("*/DONE"))) == 2, f"{sweep_dir}: a job did not finish"
    logs = sorted(sweep_dir.glob("*/train.log"))
    starts = [t for log in logs for t in log_times(log, "] - start:")]
    dones = [t for log in logs for t in log_times(log, "] - done:")]
    return {"total": end - t0, "first start": min(starts) - t0, "after last done": end - max(dones),
            "training": median([d - s for s, d in zip(starts, dones)])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600, help="trainer.total_steps of each job (smoke: 600)")
    a = ap.parse_args()
    times: dict[str, list[dict[str, float]]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = ("sequential", "parallel") if r % 2 == 0 else ("parallel", "sequential")
            for mode in order:
                t = sweep(Path(tmp) / f"{mode}{r}", mode == "parallel", a.steps)
                times[mode].append(t)
                print(f"round {r}: {mode:10s} {t['total']:6.1f} s (first job training at "
                      f"{t['first start']:.1f} s, each job trains {t['training']:.1f} s, "
                      f"{t['after last done']:.1f} s after the last one finished)", flush=True)
    seq, par = (median([t["total"] for t in times[m]]) for m in ("sequential", "parallel"))
    # Each round runs both back to back, so its ratio is the least exposed to the machine's drift.
    per_round = [p["total"] / s["total"] for p, s in zip(times["parallel"], times["sequential"])]
    print(f"{available_cores()} cores; two smoke jobs ({a.steps} steps each), whole `av-td3-train -m` command")
    print(f"sequential (basic launcher)        {seq:6.1f} s")
    print(f"parallel (joblib, n_jobs=2)        {par:6.1f} s  = {par / seq:.2f}x sequential; per round "
          f"median {median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f}) (target <= 0.6x)")
    # Start-up (imports, env and agent construction) runs once in either mode; only the training
    # overlaps. So the ratio falls towards (one job's training at 1 thread beside another) / (two jobs'
    # training at 2 threads each) as jobs get longer, and is above that for short ones.
    w1, w2 = (median([t["training"] for t in times[m]]) for m in ("parallel", "sequential"))
    f_seq = median([t["first start"] for t in times["sequential"]])
    print(f"start-up before the first job trains: {f_seq:.1f} s; one job trains {w2:.1f} s alone "
          f"(2 threads), {w1:.1f} s beside another (1 thread): long sweeps tend to {w1 / (2 * w2):.2f}x")


if __name__ == "__main__":
    main()

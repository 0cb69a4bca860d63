"""Sweep scaling: two smoke-scale jobs run in parallel with ``hydra/launcher=joblib`` against the same two
jobs one after the other, either in one ``-m`` command (Hydra's basic launcher: one process, so the
start-up is paid once) or as two commands (each its own process). Wall clock of the commands.
Target: parallel <= 0.6x one after the other, on 2 cores.

Each job gets its share of the cores (``torch_threads=0``): 2 threads each when run alone on 2 cores,
1 each when parallel. The order rotates between rounds; medians are reported, with each sweep's
timeline read from its jobs' logs: when the first job started training (process start-up, imports,
env and agent construction), how long the jobs trained, and how long the command ran after the last
job finished (interpreter shutdown). The one-command sequential and parallel runs pay the start-up
once, so the last line gives the ratio between them that longer jobs tend to: one job's training
beside another over two jobs' training alone.

    python benchmarks/bench_sweep.py [--rounds 3] [--steps 600]
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
from av_td3.helptext import plain
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


# The ways of running the two jobs, as a user would type them.
MODES = {
    "sequential": "one `-m` command, basic launcher: the jobs one after the other in one process",
    "two commands": "two `-m` commands, one job each, one after the other (each its own process)",
    "parallel": "one `-m` command, joblib launcher, n_jobs=2",
}


def sweep(sweep_dir: Path, mode: str, steps: int) -> dict[str, float]:
    base = [sys.executable, "-m", "av_td3.train", "-m", "+experiment=smoke", f"trainer.total_steps={steps}",
            "trainer.progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]
    cmds = {"sequential": [base + ["seed=0,1"]],
            "two commands": [base + ["seed=0"], base + ["seed=1"]],
            "parallel": [base + ["seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]]}[mode]
    t0 = time.time()
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True)
    end = time.time()
    assert len(list(sweep_dir.glob("*/DONE"))) == 2, f"{sweep_dir}: a job did not finish"
    logs = sorted(sweep_dir.glob("*/train.log"))
    starts = [t for log in logs for t in log_times(log, "] - start:")]
    dones = [t for log in logs for t in log_times(log, "] - done:")]
    return {"total": end - t0, "first start": min(starts) - t0, "after last done": end - max(dones),
            "training": median([d - s for s, d in zip(starts, dones)])}


def main() -> None:
    ap = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600, help="trainer.total_steps of each job (smoke: 600)")
    a = ap.parse_args()
    times: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = list(MODES)[r % len(MODES):] + list(MODES)[:r % len(MODES)]  # rotates per round
            for mode in order:
                t = sweep(Path(tmp) / f"{mode.replace(' ', '_')}{r}", mode, a.steps)
                times[mode].append(t)
                print(f"round {r}: {mode:12s} {t['total']:6.1f} s (first job training at "
                      f"{t['first start']:.1f} s, each job trains {t['training']:.1f} s, "
                      f"{t['after last done']:.1f} s after the last one finished)", flush=True)
    print(f"{available_cores()} cores; two smoke jobs ({a.steps} steps each), wall clock of the commands")
    total = {m: median([t["total"] for t in times[m]]) for m in MODES}
    for mode, what in MODES.items():
        print(f"{mode:12s} {total[mode]:6.1f} s  {what}")
    # Each round runs every mode back to back, so its ratios are the least exposed to the machine's drift.
    for peer in ("sequential", "two commands"):
        per_round = [p["total"] / s["total"] for p, s in zip(times["parallel"], times[peer])]
        print(f"parallel / {peer:12s} = {median(per_round):.2f}x (rounds {min(per_round):.2f}-"
              f"{max(per_round):.2f}; target <= 0.6x)")
    # Start-up (imports, env and agent construction) runs once in the sequential and the parallel mode;
    # only the training overlaps. So parallel / sequential falls towards (one job's training at 1 thread
    # beside another) / (two jobs' training at 2 threads each) as jobs get longer.
    w1, w2 = (median([t["training"] for t in times[m]]) for m in ("parallel", "sequential"))
    f_seq = median([t["first start"] for t in times["sequential"]])
    print(f"start-up before the first job trains: {f_seq:.1f} s; one job trains {w2:.1f} s alone "
          f"(2 threads), {w1:.1f} s beside another (1 thread): long sweeps tend to {w1 / (2 * w2):.2f}x "
          f"sequential")


if __name__ == "__main__":
    main()

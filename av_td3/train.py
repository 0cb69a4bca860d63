"""The Hydra entrypoint: compose -> validate -> Trainer(...).run() -> final evaluation return.

    av-td3-train                                    # td3, no clipping, embedded simulator, light traffic
    av-td3-train +experiment=smoke clipping=reference
    av-td3-train -m +experiment=smoke clipping=none,reference seed=0,1 hydra/launcher=joblib

Returns the final evaluation's mean return, so a Hydra sweeper (Optuna) can optimise it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from av_td3 import available_cores, config_dir
from av_td3.rundir import DONE, ERROR, RESULTS
from av_td3.config import ConfigError, register_configs, validate

log = logging.getLogger("av_td3")

register_configs()


def job_dirname(override_dirname: str, seed: object) -> str:
    """A sweep job's directory from its overrides with the seed last: ``clipping=reference,seed=1``."""
    return f"{override_dirname},seed={seed}" if override_dirname else f"seed={seed}"


if not OmegaConf.has_resolver("av_td3_job_dir"):
    OmegaConf.register_new_resolver("av_td3_job_dir", job_dirname)


def threads_per_job(requested: int) -> int:
    """torch threads for this run: as asked, or this process's cores shared among parallel jobs, and
    never more than the cores idle at the start (os.getloadavg): an intra-op thread pool larger than the
    free cores makes every op wait for a descheduled thread (up to ~20x slower beside one other
    CPU-bound process with 2 threads on 2 cores, against 1 thread)."""
    if requested:
        return requested
    cores = available_cores()
    parallel = 1
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        n_jobs = OmegaConf.select(hc.launcher, "n_jobs", default=None)
        if n_jobs is not None:
            parallel = cores if n_jobs < 0 else n_jobs
    return max(1, min(cores // parallel, idle_cores(cores)))


def idle_cores(cores: int) -> int:
    """Cores not already busy: ``cores`` minus the 1-minute load average (which counts this sweep's
    other jobs too once they run), at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return cores
    return max(1, cores - int(load + 0.5))


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def train(raw_cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if (run_dir / DONE).exists():  # a relaunched sweep skips what already finished
        log.info("%s is finished (DONE marker); skipping", run_dir)
        return _final_return(run_dir / RESULTS)
    # Heavy imports (torch, the simulators) only now: a parallel launcher's parent process, which only
    # composes configs, and a skipped job never pay for them.
    import torch

    from av_td3.allocator import tune_allocator
    from av_td3.run_lock import RunDirLocked, hold
    from av_td3.trainer import Trainer

    if not multirun:
        try:  # a rejected single run leaves no run directory behind (Hydra made one for its log)
            validate(raw_cfg)
        except ConfigError as e:
            _discard_fresh(run_dir)
            print(f"av-td3-train: invalid config: {e}", file=sys.stderr)
            sys.exit(2)
    try:  # before anything is written into the directory, error.txt included
        lock = hold(run_dir)  # noqa: F841  (held until this process ends)
    except RunDirLocked as e:
        log.error("%s", e)
        if multirun:
            raise
        print(f"av-td3-train: {e}", file=sys.stderr)
        sys.exit(3)
    tune_allocator()  # before the first large buffer: updates then reuse heap memory (allocator.py)
    _archive_error(run_dir)
    try:
        cfg = validate(raw_cfg)
        if multirun:
            _console_for_parallel_jobs(cfg, hc, run_dir.name)
        torch.set_num_threads(threads_per_job(cfg.torch_threads))
        job_num = hc.job.num if multirun else 0
        trainer = Trainer(raw_cfg, cfg, run_dir, job_num=job_num, hparams=hparams_of(raw_cfg, hc))
        final_return = trainer.run()
        _freeze_survivors()
        if trainer.stop_signal is not None:
            _report_stop(trainer.stop_signal, run_dir, hc, multirun)
        return final_return
    except ConfigError as e:
        return _fail(run_dir, f"invalid config: {e}", multirun, exc=e, code=2)
    except Exception as e:  # noqa: BLE001 - recorded in the run dir, then re-raised or reported
        return _fail(run_dir, f"{type(e).__name__}: {e}", multirun, exc=e, code=1)


class _JobPrefix(logging.Filter):
    """Prefixes each log record with its sweep job's name, so parallel jobs' lines can be told apart."""

    def __init__(self, job: str):
        super().__init__()
        self.prefix = f"[{job}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_av_td3_job", False):
            record.msg, record._av_td3_job = self.prefix + str(record.msg), True
        return True


def _console_for_parallel_jobs(cfg, hc, job: str) -> None:
    """In a sweep: every log line names its job; under a launcher that runs jobs side by side (anything
    but Hydra's basic one) the progress bars are off, since several would redraw one terminal line."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_JobPrefix(job))
    parallel = "BasicLauncher" not in str(OmegaConf.select(hc.launcher, "_target_", default=""))
    if parallel and cfg.trainer.progress_bar:
        cfg.trainer.progress_bar = False
        log.info("progress bar off: jobs run side by side (the log lines and eval.csv show progress)")


def hparams_of(cfg: DictConfig, hc) -> dict[str, float | int | str | bool]:
    """The HParams dashboard's columns: every group choice, then the settings an ablation varies."""
    hp: dict[str, float | int | str | bool] = {
        g: str(c) for g, c in hc.runtime.choices.items()
        if not g.startswith(("hydra/", "schema/", "size/"))}  # size/env, size/agent follow from the rest
    keys = ["seed", "scenario.npc_vehicles", "trainer.total_steps", "agent.batch_size", "agent.actor_lr",
            "agent.critic_lr", "agent.weight_decay", "agent.encoder", "agent.precision"]
    keys += [f"clipping.{n}.{k}" for n in ("actor", "critic")
             for k in ("mode", "max_norm", "cnn_max_norm", "mlp_max_norm", "clip_value")]
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        # Every key in every run, so a sweep's column exists for all its runs: an unset limit (None)
        # is NaN, which the HParams dashboard shows as empty beside the runs that have one.
        hp[key] = float("nan") if value is None else value
    return hp


def _fail(run_dir: Path, message: str, multirun: bool, exc: BaseException, code: int) -> float:
    """Keep the error with the run (error.txt), then: in a sweep re-raise, so this job is marked failed
    and the others go on; in a single run print the message without a traceback and exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    worker = getattr(exc, "worker_traceback", "")  # an env worker's own traceback (envs/worker.py)
    (run_dir / ERROR).write_text(message + "\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                                 + (f"\nIn the env's worker process:\n{worker}" if worker else ""))
    if multirun:
        log.error("%s", message)
        raise exc
    print(f"av-td3-train: {message}\n(traceback in {run_dir / 'error.txt'})", file=sys.stderr)
    sys.exit(code)


def relaunch_command(hc, run_dir: Path, multirun: bool) -> str:
    """The command that resumes this run (or, in a sweep, the whole sweep) from its checkpoint."""
    import shlex

    task = list(hc.overrides.task)
    if multirun:  # the sweep's own overrides (seed=0,1,2), not this job's (seed=1): Hydra's multirun.yaml
        sweep_record = Path(hc.sweep.dir) / "multirun.yaml"
        if sweep_record.is_file():
            task = list(OmegaConf.select(OmegaConf.load(sweep_record), "hydra.overrides.task", default=task))
    overrides = [o for o in task if not o.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    where = (f"hydra.sweep.dir={Path(hc.sweep.dir).absolute()}" if multirun
             else f"hydra.run.dir={run_dir.absolute()}")
    return " ".join(["av-td3-train", *(["-m"] if multirun else []), *map(shlex.quote, overrides), where])


def _report_stop(signum: int, run_dir: Path, hc, multirun: bool) -> None:
    """A run stopped by SIGINT / SIGTERM has checkpointed: say how to resume it, and exit as a process
    killed by that signal would (130 for SIGINT, 143 for SIGTERM), so scripts see it did not finish."""
    import signal

    command = relaunch_command(hc, run_dir, multirun)
    log.warning("stopped by %s; resume with:\n  %s", signal.Signals(signum).name, command)
    if multirun:  # the whole sweep stops (a sequential launcher would go on to the next job otherwise)
        raise SweepInterrupted(signum, command)
    if not multirun:
        print(f"av-td3-train: stopped by {signal.Signals(signum).name}; checkpoint in {run_dir}. Resume with:\n"
              f"  {command}", file=sys.stderr)
        sys.exit(128 + signum)


def _discard_fresh(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but what Hydra wrote before the task ran (its config
    and log): a run that never started. One with a checkpoint, events or results is kept."""
    import shutil

    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)
        # ...and the outputs/<date>/ folder of Hydra's default run dir, when nothing else is in it.
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name):
            try:
                run_dir.parent.rmdir()
            except OSError:  # other runs of that day
                pass


def _archive_error(run_dir: Path) -> None:
    """A job relaunched after a failure keeps that failure's error.txt as error.<n>.txt: the run
    directory then tells what the current attempt did, and no earlier failure is lost."""
    error = run_dir / ERROR
    if error.exists():
        n = 1
        while (run_dir / f"error.{n}.txt").exists():
            n += 1
        error.rename(run_dir / f"error.{n}.txt")


def _final_return(results_path: Path) -> float:
    import json

    final = json.loads(results_path.read_text()).get("final_eval") or {}
    return float(final.get("mean_reward", float("nan")))


class SweepInterrupted(KeyboardInterrupt):
    """A sweep job stopped by a signal (after its checkpoint): ends the sweep, not only the job."""

    def __init__(self, signum: int, command: str):
        super().__init__(signum)
        self.signum, self.command = signum, command


def main() -> None:
    try:
        train()
    except KeyboardInterrupt as e:  # Ctrl-C of a sweep: each running job has checkpointed (trainer.py)
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        resume = getattr(e, "command", None) or "the same command (the same hydra.sweep.dir)"
        print(f"av-td3-train: sweep stopped by {signal.Signals(signum).name}; every running job stopped at a "
              f"checkpoint. Resume with (finished jobs are skipped):\n  {resume}", file=sys.stderr)
        sys.exit(128 + signum)


def _freeze_survivors() -> None:
    """After a job: collect its garbage, then move what survives (mostly modules: torch, dynamo,
    highway-env, matplotlib) out of the collector's sight. Interpreter shutdown then takes ~0.25 s
    instead of ~1.3 s, in a single run and in every launcher worker; the next job in the same process
    is collected as usual."""
    import gc

    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    main()

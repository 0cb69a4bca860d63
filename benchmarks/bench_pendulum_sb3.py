"""Our TD3 against Stable-Baselines3's TD3 on Pendulum-v1: final return and wall-clock, in one run.

Ours trains through the real Trainer on a config composed from conf/ exactly as the entrypoint composes
it (``env=gym env.id=Pendulum-v1``, an MLP agent: vector observations give it no CNN, ``clipping=none``),
with gradient diagnostics, logging and checkpointing as in any run. SB3 trains ``TD3("MlpPolicy")``.
Both use SB3's TD3 defaults where they differ from ours (printed at the start): MLPs [400, 300], Adam
lr 1e-3 for actor and critic, batch 256, gamma 0.99, tau 0.005, policy delay 2, target noise 0.2 / clip
0.5, one update per step, Gaussian exploration noise 0.1 (in the [-1, 1] action range), uniform random
actions for the first ``--learning-starts`` steps, a replay buffer holding every step.

Every (implementation, seed) trains in its own process with 1 torch thread, ``--jobs`` processes at a
time (default 2: ours and SB3 on the same seed side by side, one core each; ``--jobs 1`` runs one at a
time). Wall-clock is the training call alone (ours:
``Trainer.run()``, which includes its one-episode final evaluation and checkpoint; SB3: ``learn()``).
Both final policies are then evaluated alike, deterministically, on ``--eval-episodes`` episodes from
the same seeds through ``av_td3.evaluation.evaluate`` on the same env adapter. Returns are reported as
mean +/- the 95% Student-t interval over seeds (half-width t_{0.975, n-1} s / sqrt(n)), with Welch's
t-test between the two.

    python benchmarks/bench_pendulum_sb3.py                     # 3 seeds x 6k steps, ~5 min on 2 cores
    python benchmarks/bench_pendulum_sb3.py --steps 10000                # ~10 min: both at ~-110
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ENV_ID = "Pendulum-v1"
HP = dict(hidden=[400, 300], lr=1e-3, batch=256, gamma=0.99, tau=0.005, policy_delay=2,
          target_noise=0.2, noise_clip=0.5, exploration_noise=0.1)
EVAL_SEED = 10_000


def eval_seeds(n: int) -> list[int]:
    return [EVAL_SEED + i for i in range(n)]


def train_ours(seed: int, steps: int, learning_starts: int, eval_episodes: int) -> dict:
    import torch
    from hydra import compose, initialize_config_dir

    import av_td3.train  # noqa: F401  (registers the schemas)
    from av_td3 import config_dir
    from av_td3.config import GymEnvConfig, validate
    from av_td3.envs.gym import make_gym_env
    from av_td3.evaluation import evaluate
    from av_td3.trainer import Trainer

    torch.set_num_threads(1)
    overrides = [
        "env=gym", f"env.id={ENV_ID}", "clipping=none", f"seed={seed}", "device=cpu", "torch_threads=1",
        f"agent.hidden_dims=[{HP['hidden'][0]},{HP['hidden'][1]}]", f"agent.actor_lr={HP['lr']}",
        f"agent.critic_lr={HP['lr']}", f"agent.batch_size={HP['batch']}", f"agent.gamma={HP['gamma']}",
        f"agent.tau={HP['tau']}", f"agent.policy_delay={HP['policy_delay']}",
        f"agent.policy_noise={HP['target_noise']}", f"agent.noise_clip={HP['noise_clip']}",
        f"exploration.std={HP['exploration_noise']}", "agent.weight_decay=0.0",
        f"trainer.total_steps={steps}", f"trainer.learning_starts={learning_starts}",
        f"trainer.replay_capacity={steps}", "trainer.updates_per_step=1", "trainer.eval_every=0",
        "trainer.eval_episodes=1", "trainer.checkpoint_every=0", "trainer.progress_bar=false"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        raw = compose("config", overrides=overrides)
    cfg = validate(raw)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(raw, cfg, Path(run_dir))
        t0 = time.perf_counter()
        trainer.run()
        wall = time.perf_counter() - t0
    env = make_gym_env(GymEnvConfig(id=ENV_ID), role="eval")
    summary = evaluate(trainer.agent, env, eval_seeds(eval_episodes))
    return {"impl": "ours", "seed": seed, "return": summary["mean_reward"], "wall_s": wall,
            "updates": trainer.agent.num_updates}


class SB3Policy:
    """An SB3 model as an av-td3 agent: dict observation in, action in [-1, 1] out."""

    def __init__(self, model):
        self.model = model

    def act(self, obs, explore: bool = False):
        action, _ = self.model.predict(obs["vector"], deterministic=not explore)
        return self.model.policy.scale_action(action)


def train_sb3(seed: int, steps: int, learning_starts: int, eval_episodes: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    from av_td3.config import GymEnvConfig
    from av_td3.envs.gym import make_gym_env
    from av_td3.evaluation import evaluate

    torch.set_num_threads(1)
    env = gym.make(ENV_ID)
    n = env.action_space.shape[0]
    # SB3 adds the noise in its [-1, 1] scaled action space, as ours does.
    noise = NormalActionNoise(np.zeros(n), HP["exploration_noise"] * np.ones(n))
    model = TD3("MlpPolicy", env, learning_rate=HP["lr"], buffer_size=steps,
                learning_starts=learning_starts, batch_size=HP["batch"], tau=HP["tau"], gamma=HP["gamma"],
                train_freq=1, gradient_steps=1, action_noise=noise, policy_delay=HP["policy_delay"],
                target_policy_noise=HP["target_noise"], target_noise_clip=HP["noise_clip"],
                policy_kwargs=dict(net_arch=HP["hidden"]), seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    summary = evaluate(SB3Policy(model), make_gym_env(GymEnvConfig(id=ENV_ID), role="eval"),
                       eval_seeds(eval_episodes))
    return {"impl": "sb3", "seed": seed, "return": summary["mean_reward"], "wall_s": wall,
            "updates": model._n_updates}


def t_interval(xs: list[float]) -> tuple[float, float]:
    """Mean and the 95% Student-t half-width over the values (NaN half-width for one value)."""
    from scipy import stats

    x = np.asarray(xs, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default %(default)s)")
    p.add_argument("--steps", type=int, default=6_000, help="env steps per run (default %(default)s)")
    p.add_argument("--learning-starts", type=int, default=1_000, help="random steps (default %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=10, help="per final policy (default %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, 1 torch thread each; keep it "
                   "<= the free cores so timings do not share one (default %(default)s)")
    a = p.parse_args()
    import stable_baselines3
    import torch

    print(f"Pendulum-v1, {a.steps} steps ({a.learning_starts} random), {a.seeds} seeds, "
          f"{a.eval_episodes} deterministic eval episodes per policy, {a.jobs} job(s) x 1 torch thread; "
          f"torch {torch.__version__}, SB3 {stable_baselines3.__version__}")
    print("hyperparameters (both):", ", ".join(f"{k}={v}" for k, v in HP.items()),
          f", buffer={a.steps}, updates/step=1, clipping=none, weight_decay=0")
    tasks = [(fn, seed) for seed in range(a.seeds) for fn in (train_ours, train_sb3)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, seed, a.steps, a.learning_starts, a.eval_episodes) for fn, seed in tasks]
        rows = []
        for f in futures:
            r = f.result()
            rows.append(r)
            print(f"  {r['impl']:4s} seed {r['seed']}: return {r['return']:8.1f}  train {r['wall_s']:6.1f} s  "
                  f"({r['updates']} updates)", flush=True)
    by = {impl: [r for r in rows if r["impl"] == impl] for impl in ("ours", "sb3")}
    print(f"\n{'':6s}{'final eval return (mean +/- 95% t-CI)':>40s}{'train wall-clock s (mean +/- CI)':>36s}")
    stats_ = {}
    for impl, rs in by.items():
        ret, ret_ci = t_interval([r["return"] for r in rs])
        wall, wall_ci = t_interval([r["wall_s"] for r in rs])
        stats_[impl] = (ret, wall)
        print(f"{impl:6s}{ret:26.1f} +/- {ret_ci:6.1f}{wall:26.1f} +/- {wall_ci:5.1f}")
    from scipy import stats

    ours_r, sb3_r = [r["return"] for r in by["ours"]], [r["return"] for r in by["sb3"]]
    pval = stats.ttest_ind(ours_r, sb3_r, equal_var=False).pvalue if a.seeds > 1 else math.nan
    paired = [o["wall_s"] / b["wall_s"] for o, b in zip(by["ours"], by["sb3"])]  # same seed, side by side
    ratio, ratio_ci = t_interval(paired)
    print(f"\nwall-clock ratio ours / SB3: {stats_['ours'][1] / stats_['sb3'][1]:.2f} (of the means); "
          f"per seed {', '.join(f'{x:.2f}' for x in paired)}, mean {ratio:.2f} +/- {ratio_ci:.2f}")
    print(f"return difference ours - SB3: {stats_['ours'][0] - stats_['sb3'][0]:+.1f} "
          f"(Welch t-test p = {pval:.3f})")
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

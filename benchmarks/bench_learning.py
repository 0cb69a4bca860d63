"""Learning to drive, measured: our TD3 against Stable-Baselines3's TD3 on the same task, budget and
seeds, with the classical controller and a random policy as floor and reference, in one run.

Every contender sees the env that ``+experiment=learn_to_drive`` (or ``--experiment NAME``) composes (overrides after ``--`` change
it for all of them), built by av-td3's own factory, with the action repeat the config sets:

- ``ours``: the real ``Trainer`` on the composed config, as ``av-td3-train`` runs it (diagnostics,
  logging and checkpoints included), into ``OUT/runs/ours/seed=N``;
- ``sb3``: ``stable_baselines3.TD3("MultiInputPolicy")`` with the same hyperparameters (lr, batch,
  gamma, tau, policy delay, target noise, buffer, warm-up, one update per agent step), the same
  networks (separate NatureCNN encoders of the config's widths -> features ++ vector, MLPs of its
  hidden sizes) and the same exploration noise (white Gaussian, or pink through pink-noise-rl's SB3
  hook). What SB3's TD3 has no setting for is stated in the output (the actor's saturation penalty);
- ``classical``: PID speed + Pure Pursuit (``agent=classical``), which does not learn;
- ``random``: uniform random actions.

Each evaluation runs ``av_td3.evaluation.evaluate`` on a separate eval env with the trainer's episode
seeds (``trainer.eval_seeds``), ``trainer.eval_episodes`` every ``trainer.eval_every`` env frames and
``trainer.final_eval_episodes`` at the end, for every contender alike. Per evaluation step and contender
it prints success rate, collisions per km and return over seeds as mean and IQM with 95% stratified-
bootstrap CIs (rliable, via ``av_td3.analysis.stats``), the wall time of each learner's training call
(evaluations included) and the ratio between them, the env frames each ran per second (training and
evaluation frames) and that ratio, the training phase's frames per second (evaluation time excluded, so a
policy that fails its evaluations fast does not skew it) and that ratio, and with both learners on the
same seeds a paired comparison of their final success and return (mean difference with a 95% bootstrap
CI, Wilcoxon signed-rank p). Each learner's evaluations also record the actor's mean |output before its tanh|
on the observations they drive through (``actor_pre_tanh_abs``, the quantity ours logs in training as
``train/actor_pre_tanh_abs``), and the output names a learner whose actor stayed saturated (above 3: tanh
passes under 1% of the gradient back) from some evaluation to the end: a run that does not learn says why
it does not (the record costs one more actor pass per evaluation step, in the evaluation's time).
``--equal`` restricts ours to what SB3's TD3 has (separate encoders, no augmentation, no saturation or
smoothness penalty, no auxiliary head, 1-step returns, uniform warm-up actions). Every contender's
evaluations drive the same episodes: the trainer's evaluation routes and seeds. It writes
``OUT/learning_curves.png`` and ``OUT/results.json``. Every (contender, seed) runs in its own process with
one torch thread, ``--jobs`` at a time. A job that finished in an earlier call with the same ``--out``,
experiment and overrides is not run again: its saved result
(``OUT/runs/<contender>/seed=N/bench_result.json``) is reported with the rest, so ten paired seeds can be
run a few at a time; an interrupted ``ours`` job resumes from its checkpoint, an SB3 job starts over.
``--held`` trains nothing: it reports the requested jobs OUT holds and names the ones it lacks (a comparison
still running, reported so far). A
reused result whose composed config differs from what the same command composes now (a default changed in
between) is named, with the settings that differ.

    python benchmarks/bench_learning.py --seeds 0 1 2 3 4 --sb3-seeds 0 1       # ~1 h on 2 cores
    python benchmarks/bench_learning.py --seeds 0 1 --contenders ours sb3 -- trainer.total_steps=30000
    python benchmarks/bench_learning.py --experiment drive_from_camera --equal --contenders ours sb3 \\
        --seeds 0 1 2 3 4 5 6 7 8 9                                                 # equal terms, paired
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from av_td3.helptext import plain

FIGURES = (("success_rate", "success rate"), ("collisions_per_km", "collisions per km"),
           ("mean_reward", "return"))
CONTENDERS = ("ours", "sb3", "classical", "random")
# OUT/runs/<contender>/seed=N/DONE: that job's result. A later call with the same task (experiment and
# overrides) reuses it instead of training again, so a long paired comparison can be run a few seeds at a
# time (or stopped and called again) and report every seed it has; a different task trains anew.
DONE = "bench_result.json"
# OUT/runs/ours/seed=N/EVALUATION_RECORD: each evaluation's wall time and the actor's mean |pre-tanh|, by step.
EVALUATION_RECORD = "evaluations.json"
# Mean |pre-tanh| above this at every evaluation from some point on: a saturated actor (tanh'(3) = 0.0099).
SATURATED = 3.0
# Ours restricted to what SB3's TD3 has (--equal): its layout, and none of the levers it has no setting for.
EQUAL_TERMS = ["agent.encoder=separate", "agent.augmentation=none", "agent.saturation_penalty=0", "agent.n_step=1",
               "agent.smoothness_penalty=0", "agent.aux_weight=0", "exploration.warmup=uniform"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import av_td3.train  # noqa: F401  (registers the schemas and resolvers)
    from av_td3 import config_dir
    from av_td3.config import validate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        raw = hydra_compose("config", overrides=overrides)
    return raw, validate(raw)


def eval_env(cfg):
    from av_td3.envs.factory import build_run_env

    return build_run_env(cfg, "eval")


def job(contender: str, seed: int, overrides: list[str], out: str, experiment: str = "learn_to_drive",
        train: bool = True) -> dict | None:
    """One contender's run on one seed, or its saved result from an earlier call on the same task; None when
    ``train`` is off and no such result is held."""
    import torch

    from av_td3.allocator import tune_allocator
    from av_td3.config.saved import changed_settings, describe_changes

    torch.set_num_threads(1)
    tune_allocator()  # as av-td3-train does for every run (SB3 runs with it too: an equal footing)
    # No final evaluation on other splits (trainer.final_eval_splits): SB3 and the fixed contenders have none,
    # and ours would count it as training time.
    common = [f"+experiment={experiment}", f"seed={seed}", "device=cpu", "torch_threads=1",
              "trainer.progress_bar=false", "trainer.final_eval_splits=[]"]
    raw, cfg = compose([*common, *overrides])
    if contender == "classical" and cfg.env.vector != "reference":
        # The controller steers on route waypoints and follows the car ahead by its gap: a privileged
        # baseline on a camera task, given the reference vector with the gap.
        raw, cfg = compose([*common, *overrides, "env.vector=reference", "env.observe_obstacle=true"])
    run_dir = Path(out) / "runs" / contender / f"seed={seed}"
    done, task = run_dir / DONE, {"experiment": experiment, "overrides": overrides}
    config = plain_config(raw)
    if done.is_file():  # finished by an earlier call on the same task: its result stands
        saved = json.loads(done.read_text())
        if saved["task"] == task:
            # The same command composes another config once a default changes: say which settings the
            # saved run had otherwise, so a comparison that spans such a change knows it does.
            if "config" not in saved:
                print(f"  note: {contender} seed {seed}'s saved result is reused; its composed config was "
                      "not saved, so it is not checked against this call's", flush=True)
            elif changed := changed_settings(saved["config"], config, now_raw=raw):
                print(f"  note: {contender} seed {seed}'s saved result is reused; it ran with another composed "
                      f"config ({describe_changes(changed)})", flush=True)
            return {"contender": contender, "seed": seed, **saved["result"], "reused": True}
    if not train:
        return None
    fn = {"ours": train_ours, "sb3": train_sb3, "classical": run_fixed, "random": run_fixed}[contender]
    result = fn(raw, cfg, run_dir, contender)
    run_dir.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"task": task, "config": config, "result": result}, default=float))
    return {"contender": contender, "seed": seed, **result}


def plain_config(raw) -> dict:
    """The composed config as JSON holds it (nested dicts, lists; what bench_result.json saves)."""
    from omegaconf import OmegaConf

    return json.loads(json.dumps(OmegaConf.to_container(raw, resolve=True), default=str))


def evaluation_frames(evals: list[dict], t) -> int:
    """Env frames the evaluations ran: each phase's episodes times their mean length (in frames), the last
    phase with ``final_eval_episodes``. A learner that drives the whole route runs longer episodes."""
    episodes = [t.eval_episodes] * (len(evals) - 1) + [t.final_eval_episodes or t.eval_episodes]
    return round(sum(n * e["avg_episode_length"] for n, e in zip(episodes, evals)))


def train_ours(raw, cfg, run_dir: Path, _name: str) -> dict:
    import torch

    from av_td3.trainer import Trainer

    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(raw, cfg, run_dir)
    evaluate = trainer._evaluate
    agent = trainer.agent

    @torch.no_grad()
    def pre_tanh(obs):
        batch = {k: torch.as_tensor(v).unsqueeze(0) for k, v in obs.items()}
        return agent.pre_tanh(batch)[0].numpy()

    # Each evaluation's probe and wall time, by step, on disk: a resumed job keeps what the calls before it
    # measured. An evaluation past the checkpoint an interrupted call stopped at runs again and its record is
    # replaced, as the run's wall time (trainer.elapsed(), kept in the checkpoint) drops that stretch too.
    record_path = run_dir / EVALUATION_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}

    def timed_evaluate(*args, **kwargs):  # the evaluation phases' wall time, to leave it out of training's
        probe = SaturationProbe(agent, pre_tanh)
        trainer.agent = probe  # what the trainer's evaluation drives with; training never sees it
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            record[str(trainer.state.step)] = {"eval_s": time.perf_counter() - t0, "actor_pre_tanh_abs": probe.mean()}
            trainer.agent = agent
            record_path.write_text(json.dumps(record))

    trainer._evaluate = timed_evaluate
    trainer.run()  # resumes from OUT/runs/ours/seed=N/checkpoint.pt when an earlier call left one
    evals = trainer.evals  # every phase, the final one (final_eval_episodes) last
    measured = [(e, record[str(e["step"])]) for e in evals if str(e["step"]) in record]
    for e, m in measured:
        e["actor_pre_tanh_abs"] = m["actor_pre_tanh_abs"]
    # An evaluation with no record (a call that kept none ran it) counts as training time.
    eval_s = sum(m["eval_s"] for _, m in measured)
    return {"evals": evals, "wall_s": trainer.elapsed(), "eval_s": eval_s, "frames": trainer.step}


def sb3_policy_kwargs(a) -> dict:
    """SB3's policy_kwargs for av-td3's networks under agent config ``a``: separate encoders of av-td3's
    layout (NatureCNN of the config's widths -> linear feature_dim -> ReLU, concatenated with the
    observation vector) and MLPs of its hidden sizes."""
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class DriveExtractor(BaseFeaturesExtractor):
        def __init__(self, observation_space):
            image, vector = observation_space["image"], observation_space["vector"]
            super().__init__(observation_space, features_dim=a.feature_dim + vector.shape[0])
            layers, c = [], image.shape[0]
            for ch, kernel, stride in zip(a.cnn_channels, a.cnn_kernels, a.cnn_strides):
                layers += [nn.Conv2d(c, ch, kernel, stride), nn.ReLU()]
                c = ch
            self.cnn = nn.Sequential(*layers, nn.Flatten())
            with torch.no_grad():
                n = self.cnn(torch.zeros(1, *image.shape)).shape[1]
            self.linear = nn.Sequential(nn.Linear(n, a.feature_dim), nn.ReLU())

        def forward(self, obs):
            return torch.cat([self.linear(self.cnn(obs["image"])), obs["vector"]], dim=1)

    return dict(net_arch=list(a.hidden_dims), features_extractor_class=DriveExtractor,
                share_features_extractor=False)


def sb3_td3_kwargs(a) -> dict:
    """SB3 TD3's arguments that agent config ``a`` sets: its learning rate, batch, gamma, tau, policy
    delay, target policy noise and networks."""
    return dict(learning_rate=a.critic_lr, batch_size=a.batch_size, tau=a.tau, gamma=a.gamma,
                policy_delay=a.policy_delay, target_policy_noise=a.policy_noise, target_noise_clip=a.noise_clip,
                policy_kwargs=sb3_policy_kwargs(a))


def train_sb3(raw, cfg, run_dir: Path, _name: str) -> dict:
    import torch
    from stable_baselines3 import TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    from av_td3.envs.factory import build_run_env
    from av_td3.envs.route_file import eval_routes
    from av_td3.evaluation import evaluate
    from av_td3.trainer import eval_seeds

    a, t, x = cfg.agent, cfg.trainer, cfg.exploration
    routes = eval_routes(cfg.env)  # the trainer's evaluation routes: every contender drives the same episodes
    k = t.action_repeat
    train_env = build_run_env(cfg, "train")
    test_env = eval_env(cfg)

    n_act = train_env.action_space.shape[0]
    horizon = math.ceil(cfg.env.max_episode_steps / k)
    sigma = x.std * (np.ones(n_act) if x.action_scale is None else np.asarray(x.action_scale))
    if x.final_std is not None:
        raise SystemExit("bench_learning: SB3's action noise has no decay schedule (exploration.final_std)")
    if x.process == "pink":
        from pink import PinkActionNoise

        noise = PinkActionNoise(sigma, horizon, n_act, rng=np.random.default_rng(cfg.seed))
    elif x.process == "gaussian":
        noise = NormalActionNoise(np.zeros(n_act), sigma)
    else:
        raise SystemExit(f"bench_learning: no SB3 counterpart for exploration.process={x.process}")

    evals: list[dict] = []
    eval_s = [0.0]

    def pre_tanh(model):
        """SB3's actor before its tanh (actor.mu ends in nn.Tanh), on one observation."""
        def fn(obs):
            with torch.no_grad():
                x = model.policy.obs_to_tensor(obs)[0]
                features = model.actor.extract_features(x, model.actor.features_extractor)
                return model.actor.mu[:-1](features)[0].numpy()
        return fn

    def probed(model, n_episodes: int) -> dict:
        probe = SaturationProbe(Policy(model), pre_tanh(model))
        result = evaluate(probe, test_env, eval_seeds(cfg.seed, n_episodes), routes=routes)
        return {**result, "actor_pre_tanh_abs": probe.mean()}

    def timed(fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            eval_s[0] += time.perf_counter() - t0

    class Evaluate(BaseCallback):
        """Evaluate every eval_every env frames, as the trainer does (SB3 counts agent steps)."""

        def _on_step(self) -> bool:
            frames = self.num_timesteps * k
            if t.eval_every and frames % t.eval_every < k and frames < t.total_steps:
                evals.append({"step": frames, **timed(lambda: probed(self.model, t.eval_episodes))})
            return True

    model = TD3("MultiInputPolicy", train_env, buffer_size=t.replay_capacity,
                learning_starts=t.learning_starts // k, train_freq=(1, "step"),
                gradient_steps=t.updates_per_step, action_noise=noise, seed=cfg.seed, device="cpu", verbose=0,
                **sb3_td3_kwargs(a))
    t0 = time.perf_counter()
    model.learn(total_timesteps=math.ceil(t.total_steps / k), callback=Evaluate())
    final = timed(lambda: probed(model, t.final_eval_episodes or t.eval_episodes))
    wall = time.perf_counter() - t0
    evals.append({"step": model.num_timesteps * k, **final})
    return {"evals": evals, "wall_s": wall, "eval_s": eval_s[0], "frames": model.num_timesteps * k}


class Policy:
    """An SB3 model behind av-td3's evaluation interface (deterministic actions)."""

    def __init__(self, model):
        self.model = model

    def act(self, obs):
        return self.model.predict(obs, deterministic=True)[0]


class SaturationProbe:
    """Drives with ``agent`` (its own actions, unchanged) and records the mean |pre-tanh| of each
    observation it acts on, by ``pre_tanh(obs)``."""

    def __init__(self, agent, pre_tanh):
        self.agent, self.pre_tanh, self.values = agent, pre_tanh, []

    def act(self, obs):
        self.values.append(float(np.abs(self.pre_tanh(obs)).mean()))
        return self.agent.act(obs)

    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan


def saturated_from(evals: list[dict]) -> int | None:
    """The first evaluation step from which every evaluation found the actor saturated, or None."""
    start = None
    for e in evals:
        sat = e.get("actor_pre_tanh_abs", math.nan)
        if not sat > SATURATED:  # NaN (not recorded) counts as not saturated
            start = None
        elif start is None:
            start = e["step"]
    return start


class RandomPolicy:
    def __init__(self, space, seed: int):
        self.space = space
        self.space.seed(seed)

    def act(self, obs):
        return self.space.sample()


def classical_agent(cfg, env):
    """The classical controller (agent=classical's defaults) for ``env``, following the car ahead when the
    observation carries the gap (env.observe_obstacle)."""
    import torch

    from av_td3.agents.classical import ClassicalAgent
    from av_td3.agents.spec import AgentSpec
    from av_td3.config import ClassicalConfig

    c = ClassicalConfig()
    spec = AgentSpec.from_spaces(env.observation_space, env.action_space, torch.device("cpu"),
                                 cfg.clipping, step_seconds=cfg.env.step_seconds() * cfg.trainer.action_repeat,
                                 obstacle_range=cfg.env.obstacle_range)
    return ClassicalAgent(spec, c.target_speed, c.kp, c.ki, c.kd, c.lookahead, c.wheelbase, c.dt,
                          car_following=cfg.env.observe_obstacle)


def run_fixed(raw, cfg, _run_dir: Path, name: str) -> dict:
    """A contender that does not learn: its final evaluation is its score at every step."""
    from av_td3.envs.route_file import eval_routes
    from av_td3.evaluation import evaluate_by_route
    from av_td3.trainer import eval_seeds

    env = eval_env(cfg)
    agent = classical_agent(cfg, env) if name == "classical" else RandomPolicy(env.action_space, cfg.seed)
    t = cfg.trainer
    seeds = eval_seeds(cfg.seed, t.final_eval_episodes or t.eval_episodes)
    final, by_route = evaluate_by_route(agent, env, seeds, routes=eval_routes(cfg.env))
    return {"evals": [{"step": t.total_steps, **final}], "final_eval_by_route": by_route, "wall_s": math.nan,
            "frames": 0}


# --- statistics and output ------------------------------------------------------------------------
def nominal(step: int, every: int, total: int) -> int:
    """The evaluation point an evaluation belongs to: with action repeat k it runs at the first agent
    step past a multiple of eval_every (up to k - 1 frames later), and the final one at or just past the
    budget; seeds and learners are compared at the same nominal point."""
    if step >= total:
        return total
    return step - step % every if every else step


def summarise(results: list[dict], reps: int, every: int, total: int) -> dict:
    """contender -> nominal step -> figure -> {n, mean, mean_ci, iqm, iqm_ci}."""
    from av_td3.analysis import stats

    out: dict = {}
    for name in dict.fromkeys(r["contender"] for r in results):
        runs = [r for r in results if r["contender"] == name]
        for r in runs:
            for e in r["evals"]:
                e["step"] = nominal(e["step"], every, total)
        steps = sorted({e["step"] for r in runs for e in r["evals"]})
        out[name] = {}
        for step in steps:
            at = [next((e for e in r["evals"] if e["step"] == step), None) for r in runs]
            at = [e for e in at if e is not None]
            row = {}
            for key, _ in FIGURES:
                values = np.array([e.get(key, math.nan) for e in at], dtype=float)
                s = stats.summarize({key: values}, reps=reps).get(key)
                if s is not None:
                    row[key] = {"n": s.n, "mean": s.mean, "mean_ci": s.mean_ci, "iqm": s.iqm,
                                "iqm_ci": s.iqm_ci}
            out[name][step] = row
    return out


def fmt(cell: dict | None, pct: bool = False) -> str:
    if not cell:
        return "-"
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.3g}")
    return (f"{f(cell['iqm'])} [{f(cell['iqm_ci'][0])}, {f(cell['iqm_ci'][1])}] "
            f"(mean {f(cell['mean'])}, n={cell['n']})")


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FIGURES), figsize=(13, 3.8), constrained_layout=True)
    colours = dict(zip(CONTENDERS, ("tab:blue", "tab:orange", "tab:green", "tab:grey")))
    for ax, (key, label) in zip(axes, FIGURES):
        for name, by_step in summary.items():
            steps = [s for s in by_step if key in by_step[s]]
            if not steps:
                continue
            iqm = np.array([by_step[s][key]["iqm"] for s in steps])
            lo = np.array([by_step[s][key]["iqm_ci"][0] for s in steps])
            hi = np.array([by_step[s][key]["iqm_ci"][1] for s in steps])
            n = by_step[steps[-1]][key]["n"]
            if len(steps) == 1:  # no learning: a level line across the budget
                ax.axhline(iqm[0], color=colours.get(name), ls="--", label=f"{name} (n={n})")
                ax.axhspan(lo[0], hi[0], color=colours.get(name), alpha=0.12)
            else:
                ax.plot(steps, iqm, color=colours.get(name), label=f"{name} (n={n})")
                ax.fill_between(steps, lo, hi, color=colours.get(name), alpha=0.2)
        ax.set_xlabel("env frames")
        ax.set_ylabel(f"{label} (IQM)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{title}: IQM over seeds, bands = 95% stratified-bootstrap CI (rliable)", fontsize=10)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sb3-seeds", type=int, nargs="+", help="seeds for SB3 (default: --seeds); the wall-time "
                                                             "ratio uses the seeds both learners ran")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--experiment", default="learn_to_drive", help="the task (+experiment=NAME) every contender runs")
    p.add_argument("--equal", action="store_true",
                   help="ours restricted to what SB3's TD3 has: " + " ".join(EQUAL_TERMS))
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one torch thread each)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/learning"))
    p.add_argument("--replot", action="store_true",
                   help="no training: summarise and plot OUT/results.json again (its own overrides)")
    p.add_argument("--held", action="store_true",
                   help="no training: report the requested (contender, seed) jobs OUT already holds for this task, "
                        "and name the ones it lacks (a comparison that is still running, reported so far)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides after --, for every contender")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        args.overrides = saved["overrides"]
        args.experiment = saved.get("experiment", "learn_to_drive")
    elif args.equal:
        args.overrides = EQUAL_TERMS + args.overrides
    _, cfg = compose([f"+experiment={args.experiment}", *args.overrides])
    if args.replot:
        return report(saved["runs"], cfg, args)
    npcs = f"{cfg.scenario.npc_vehicles} NPCs"
    if hasattr(cfg.env, "traffic_fraction"):  # the embedded env spawns this share of the scenario's NPCs
        npcs = (f"{round(cfg.scenario.npc_vehicles * cfg.env.traffic_fraction)} NPCs (the scenario's "
                f"{cfg.scenario.npc_vehicles} x env.traffic_fraction {cfg.env.traffic_fraction})")
    print(f"task: +experiment={args.experiment} {' '.join(args.overrides)}; {cfg.trainer.total_steps} env "
          f"frames, action repeat {cfg.trainer.action_repeat}, {npcs}, "
          f"seeds {args.seeds}")
    print(f"SB3 has no counterpart of agent.augmentation={cfg.agent.augmentation}, "
          f"agent.saturation_penalty={cfg.agent.saturation_penalty}, "
          f"agent.layer_norm={cfg.agent.layer_norm}, agent.n_step={cfg.agent.n_step} or "
          f"exploration.warmup={cfg.exploration.warmup} (its warm-up actions are uniform); it runs without "
          "them", flush=True)
    # Learners first, ours and SB3 on the same seed side by side (equal load on both), then the rest.
    seeds = {c: (args.sb3_seeds or args.seeds) if c == "sb3" else args.seeds for c in args.contenders}
    learners = [c for c in args.contenders if c in ("ours", "sb3")]
    order = [(c, s) for s in dict.fromkeys(args.seeds + (args.sb3_seeds or [])) for c in learners
             if s in seeds[c]]
    order += [(c, s) for c in args.contenders if c not in learners for s in seeds[c]]
    from av_td3.evaluate_run import table

    results: list[dict] = []
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(job, c, s, args.overrides, str(args.out), args.experiment, not args.held)
                   for c, s in order]
        for (c, s), f in zip(order, futures):
            r = f.result()
            if r is None:
                print(f"  {c} seed {s}: not held in {args.out / 'runs'} for this task; left out (--held)", flush=True)
                continue
            results.append(r)
            final = r["evals"][-1]
            sat = saturated_from(r["evals"])
            print(f"  {r['contender']} seed {r['seed']}: final success {final.get('success_rate', math.nan):.0%}, "
                  f"return {final['mean_reward']:.0f}, wall {r['wall_s']:.0f} s"
                  f"{'' if sat is None else f', actor saturated from {sat} frames'}"
                  f"{' (an earlier call ran it: ' + DONE + ')' if r.pop('reused', False) else ''}", flush=True)
            if r.get("final_eval_by_route"):  # a fixed contender on routes: as av-td3 evaluate prints it
                print(textwrap.indent(table({
                    "run": f"{r['contender']} seed {r['seed']}", "step": final["step"],
                    "episodes": cfg.trainer.final_eval_episodes or cfg.trainer.eval_episodes,
                    "routes": r["final_eval_by_route"], "overall": final}), "    "), flush=True)
    if not results:
        raise SystemExit(f"bench_learning.py: {args.out / 'runs'} holds none of the requested jobs for this task "
                         "(--held trains nothing)")
    report(results, cfg, args)


def paired(walls: dict, seeds: list[int], reps: int) -> None:
    """Ours against SB3 seed by seed: the mean paired difference of the final success rate and return,
    with a 95% bootstrap CI over seeds and the Wilcoxon signed-rank test's two-sided p."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    for key, label in (("success_rate", "success"), ("mean_reward", "return")):
        d = np.array([walls["ours"][s]["evals"][-1].get(key, math.nan) - walls["sb3"][s]["evals"][-1].get(key, math.nan)
                      for s in seeds], dtype=float)
        if not np.isfinite(d).all():
            continue
        boot = rng.choice(d, size=(reps, len(d))).mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        p = wilcoxon(d).pvalue if np.any(d != 0) else 1.0
        print(f"paired, ours - sb3, final {label} (n={len(d)} seeds): mean {d.mean():+.3g} [{lo:+.3g}, {hi:+.3g}], "
              f"Wilcoxon signed-rank p = {p:.3g}")


def report(results: list[dict], cfg, args) -> None:
    """Print the figures, write the curves and results.json."""
    summary = summarise(results, args.reps, cfg.trainer.eval_every, cfg.trainer.total_steps)
    print("\nfinal evaluation, IQM [95% CI] (mean, n):")
    for name, by_step in summary.items():
        last = by_step[max(by_step)]
        print(f"  {name:9s} success {fmt(last.get('success_rate'), pct=True)}; collisions/km "
              f"{fmt(last.get('collisions_per_km'))}; return {fmt(last.get('mean_reward'))}")
    walls = {c: {r["seed"]: r for r in results if r["contender"] == c} for c in ("ours", "sb3")}
    common = sorted(set(walls["ours"]) & set(walls["sb3"]))
    if common:
        # Two views of one run: the wall time of the same training budget (evaluations included), and
        # env frames per second counting evaluation frames too (the learner that completes the route
        # evaluates on more frames for the same budget, so its wall time holds more work).
        ratios = [walls["sb3"][s]["wall_s"] / walls["ours"][s]["wall_s"] for s in common]
        eval_frames = {c: [evaluation_frames(walls[c][s]["evals"], cfg.trainer) for s in common] for c in walls}
        rates = {c: {s: (walls[c][s]["frames"] + n) / walls[c][s]["wall_s"] for s, n in zip(common, eval_frames[c])}
                 for c in walls}
        rate_ratios = [rates["ours"][s] / rates["sb3"][s] for s in common]
        print(f"\nsame training budget ({cfg.trainer.total_steps} frames, evaluations included): wall-time "
              f"ratio sb3/ours per seed {[round(x, 2) for x in ratios]}, median {np.median(ratios):.2f}x")
        print(f"end-to-end env frames/s, training + evaluation frames (evaluation frames per seed: ours "
              f"{eval_frames['ours']}, sb3 {eval_frames['sb3']}), median over seeds: ours "
              f"{np.median(list(rates['ours'].values())):.1f}, sb3 {np.median(list(rates['sb3'].values())):.1f}; "
              f"ratio ours/sb3 per seed {[round(x, 2) for x in rate_ratios]}, median {np.median(rate_ratios):.2f}x")
        if all("eval_s" in walls[c][s] for c in walls for s in common):
            train_rates = {c: {s: walls[c][s]["frames"] / max(walls[c][s]["wall_s"] - walls[c][s]["eval_s"], 1e-9)
                               for s in common} for c in walls}
            train_ratios = [train_rates["ours"][s] / train_rates["sb3"][s] for s in common]
            print(f"training-phase env frames/s (evaluation time excluded), median over seeds: ours "
                  f"{np.median(list(train_rates['ours'].values())):.1f}, sb3 "
                  f"{np.median(list(train_rates['sb3'].values())):.1f}; ratio ours/sb3 per seed "
                  f"{[round(x, 2) for x in train_ratios]}, median {np.median(train_ratios):.2f}x")
        paired(walls, common, args.reps)
    for name in ("ours", "sb3"):
        probed = {s: r["evals"][-1]["actor_pre_tanh_abs"] for s, r in sorted(walls[name].items())
                  if "actor_pre_tanh_abs" in r["evals"][-1]}
        if probed:
            stuck = {s: saturated_from(walls[name][s]["evals"]) for s in probed}
            print(f"{name} actor's mean |pre-tanh| at the final evaluation per seed "
                  f"{ {s: round(v, 1) for s, v in probed.items()} }; saturated (> {SATURATED:g}) at every "
                  f"evaluation from frame: { {s: f for s, f in stuck.items() if f is not None} or 'none'}")
    for name in ("ours", "sb3"):
        if walls[name]:
            print(f"{name} wall per seed (s): {[round(walls[name][s]['wall_s']) for s in sorted(walls[name])]}")
    plot(summary, args.out / "learning_curves.png", f"{args.experiment}, {cfg.trainer.total_steps} env frames")
    (args.out / "results.json").write_text(json.dumps({"experiment": args.experiment, "overrides": args.overrides,
                                                       "runs": results, "summary": summary}, indent=1, default=float))
    print(f"\nwrote {args.out / 'learning_curves.png'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()

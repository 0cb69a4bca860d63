"""TD3 update throughput against Stable-Baselines3 on SPEC's architecture, in one benchmark run.

Both sides: separate NatureCNN encoders for actor and critic (SB3: share_features_extractor=False),
4x84x84 uint8 images + a 53-float vector (SB3: MultiInputPolicy, its CombinedExtractor with a 512-wide
NatureCNN, the equal of SPEC's network), MLPs 256-256, twin critics, policy delay 2, batch 256, the
same replay contents; one training step each, replay sampling included. Ours runs with gradient
diagnostics on (clipping=reference, every value fetched after every update).

Each contender runs in a process of its own, set up as its framework sets up a training process:
av-td3's keeps batch-sized buffers in the heap (``av_td3.allocator``), SB3's uses glibc's defaults.
A shared process would hand the allocator setting, and each side's heap fragmentation, to the other.
SB3 also runs a second time with av-td3's allocator setting: the ratio against it compares the two
updates on an equal footing. The parent times one round of every contender in turn (the others wait,
idle), so drift on the machine hits all of them alike; each ratio is the median of per-round ratios.

    python benchmarks/bench_update.py                  # CPU, 2 threads
    python benchmarks/bench_update.py --quick          # fewer contenders (no bf16, no tuned SB3)
    python benchmarks/bench_update.py --device cuda    # GPU, SB3 on the same GPU

``--experiment NAME`` times the update of ``+experiment=NAME`` instead, under bench_learning.py's equal
terms (``--equal``: separate encoders, no augmentation, penalties, auxiliary head or n-step returns):
the experiment's image, frame stack, vector, networks and batch; ours built as av-td3-train builds it
(``build_agent`` on the env's spaces, its replay buffer), SB3 with the networks and hyperparameters
bench_learning.py gives it (the shared row: ours with its one encoder, else on equal terms). The update
is what the learning benchmark's training-phase frames/s measures beside the env steps both frameworks
share.

    python benchmarks/bench_update.py --experiment drive_from_camera --quick
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from av_td3.allocator import tune_allocator
from av_td3.logger import UpdateLog
from av_td3.replay import ReplayBuffer
from bench_replay import fill
from common import machine, make_agent, median, rate, reference_clipping, update_parser


@dataclass(frozen=True)
class Contender:
    framework: str  # "av-td3" or "sb3"
    encoder: str = "separate"
    precision: str = "float32"
    compiled: bool = False
    tuned_allocator: bool = True

    @property
    def name(self) -> str:
        if self.framework == "sb3":
            alloc = "av-td3's" if self.tuned_allocator else "default"
            return f"SB3 TD3 (separate encoders, {alloc} allocator)"
        extra = (", bf16" if self.precision == "bfloat16" else "") + (", compiled" if self.compiled else "")
        return f"av-td3 TD3 ({self.encoder} encoders{extra}, diagnostics on)"


SB3_DEFAULT = Contender("sb3", tuned_allocator=False)
SB3_TUNED = Contender("sb3", tuned_allocator=True)


def contenders(compiled: bool, quick: bool, sb3: bool) -> list[Contender]:
    out = [Contender("av-td3", enc) for enc in ("separate", "shared")]
    if not quick:
        out += [Contender("av-td3", enc, precision="bfloat16") for enc in ("separate", "shared")]
    if compiled:
        out += [Contender("av-td3", enc, compiled=True) for enc in ("separate", "shared")]
    if sb3:
        out += [SB3_DEFAULT] + ([] if quick else [SB3_TUNED])
    return out


def sb3_model(image: int, frames: int, batch: int, device: str, n_fill: int):
    import gymnasium as gym
    from stable_baselines3 import TD3

    class Shapes(gym.Env):
        observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (frames, image, image), np.uint8),
            "vector": gym.spaces.Box(-np.inf, np.inf, (53,), np.float32)})
        action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    model = TD3("MultiInputPolicy", Shapes(), buffer_size=n_fill + 10, batch_size=batch,
                learning_starts=0, policy_delay=2, device=device, verbose=0,
                policy_kwargs=dict(net_arch=[256, 256], share_features_extractor=False,
                                   features_extractor_kwargs=dict(cnn_output_dim=512),
                                   normalize_images=True))
    sb3_fill(model, n_fill, Shapes.observation_space)
    model._setup_learn(total_timesteps=1)  # creates the logger train() writes to
    return model


def build(c: Contender, image: int, frames: int, batch: int, device: str, n_fill: int,
          experiment: str | None = None) -> Callable[[], None]:
    """One training step of ``c`` in this process (on ``experiment``'s task under equal terms, if given).
    Ours logs like the trainer at its most expensive setting: every gradient diagnostic fetched after
    every update."""
    if experiment is not None:
        return build_experiment(c, experiment, device, n_fill)
    if c.framework == "sb3":
        model = sb3_model(image, frames, batch, device, n_fill)
        return lambda: model.train(gradient_steps=1, batch_size=batch)
    buf = ReplayBuffer(n_fill + 10, (frames, image, image), 53, 2, device=device)
    fill(buf, n_fill, frames, image)
    agent = make_agent(image, frames, batch, device, reference_clipping(), encoder=c.encoder,
                       precision=c.precision, compile=c.compiled)
    return ours_step(agent, buf, batch)


def ours_step(agent, buf: ReplayBuffer, batch: int) -> Callable[[], None]:
    """One av-td3 update from ``buf`` with every gradient diagnostic fetched after it."""
    log = UpdateLog()

    def step():
        log.record(agent.update(*buf.sample(batch)), 0)
        log.fetch({n: g.health() for n, g in agent.guarded_steps().items()})

    return step


def experiment_task(experiment: str, precision: str = "float32", compiled: bool = False,
                    encoder: str = "separate"):
    """(composed config, validated config, train env) of ``+experiment=experiment`` under
    bench_learning.py's equal terms (with ``encoder``: the shared contender keeps its one encoder)."""
    import bench_learning
    from av_td3.envs.factory import build_run_env

    raw, cfg = bench_learning.compose([f"+experiment={experiment}", *bench_learning.EQUAL_TERMS,
                                       f"agent.precision={precision}", f"agent.compile={str(compiled).lower()}",
                                       f"agent.encoder={encoder}"])
    return raw, cfg, build_run_env(cfg, "train")


def experiment_shapes(experiment: str, cfg, space) -> str:
    """What ``build_experiment`` builds, in words (``cfg``, ``space``: ``experiment_task``'s config and its
    env's observation space)."""
    a = cfg.agent
    frames, height, width = space["image"].shape
    return (f"+experiment={experiment} on equal terms: {frames}x{height}x{width} uint8 + {space['vector'].shape[0]}, "
            f"CNN {list(a.cnn_channels)} (kernels {list(a.cnn_kernels)}, strides {list(a.cnn_strides)}) -> "
            f"{a.feature_dim}, MLPs {list(a.hidden_dims)}, batch {a.batch_size}")


def build_experiment(c: Contender, experiment: str, device: str, n_fill: int) -> Callable[[], None]:
    """One training step of ``c`` on ``+experiment=experiment`` under equal terms: ours as av-td3-train
    builds it, SB3 as bench_learning.py runs it; random replay contents of the env's shapes."""
    from av_td3.agents.build import build_agent

    raw, cfg, env = experiment_task(experiment, c.precision, c.compiled, c.encoder)
    a, space = cfg.agent, env.observation_space
    frames, height, width = space["image"].shape
    vector = space["vector"].shape[0]
    if c.framework == "sb3":
        import bench_learning
        from stable_baselines3 import TD3

        model = TD3("MultiInputPolicy", env, buffer_size=n_fill + 10, learning_starts=0, device=device,
                    verbose=0, **bench_learning.sb3_td3_kwargs(a))
        sb3_fill(model, n_fill, space)
        model._setup_learn(total_timesteps=1)  # creates the logger train() writes to
        return lambda: model.train(gradient_steps=1, batch_size=a.batch_size)
    agent = build_agent(raw, cfg, space, env.action_space, torch.device(device))
    n_act = env.action_space.shape[0]
    env.close()
    buf = ReplayBuffer(n_fill + 10, (frames, height, width), vector, n_act, device=device)
    fill(buf, n_fill, frames, height, vector=vector, width=width)
    return ours_step(agent, buf, a.batch_size)


def sb3_fill(model, n: int, space) -> None:
    """``n`` random transitions of ``space``'s shapes in SB3's replay buffer."""
    rng = np.random.default_rng(0)
    frames, height, width = space["image"].shape
    obs = {"image": rng.integers(0, 256, (1, frames, height, width), dtype=np.uint8),
           "vector": rng.normal(size=(1, space["vector"].shape[0])).astype(np.float32)}
    for _ in range(n):
        model.replay_buffer.add(obs, obs, rng.uniform(-1, 1, (1, 2)).astype(np.float32),
                                np.zeros(1, np.float32), np.zeros(1, bool), [{}])


def build_contenders(image: int, frames: int, batch: int, device: str, n_fill: int, compiled: bool,
                     sb3: bool, experiment: str | None = None) -> dict[str, Callable[[], None]]:
    """The float32 contenders built in this one process (for ``profile_update.py``)."""
    if not tune_allocator():
        print("note: allocator thresholds not set (not glibc)")
    cs = contenders(compiled, quick=True, sb3=sb3)
    return {c.name: build(c, image, frames, batch, device, n_fill, experiment) for c in cs}


def _worker(conn, c: Contender, a: argparse.Namespace) -> None:
    """A contender's own process: build it, warm it up, then time one round per request."""
    torch.set_num_threads(a.threads)
    if c.tuned_allocator:
        tune_allocator()
    fn = build(c, a.image, a.frames, a.batch, a.device, a.fill, a.experiment)
    warm = rate(fn, 2, a.device)  # allocator, lazy init, compilation
    conn.send(2 / warm)
    while (n := conn.recv()) is not None:
        conn.send(rate(fn, n, a.device))


def main() -> None:
    ap = update_parser(__doc__, updates=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fill", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-sb3", action="store_true")
    ap.add_argument("--quick", action="store_true", help="float32 av-td3 and default-allocator SB3 only")
    ap.add_argument("--compile", action="store_true", help="also time av-td3 with agent.compile=true")
    ap.add_argument("--experiment", help="this experiment's task under equal terms instead of SPEC's shapes "
                    "(--image, --frames and --batch then come from it)")
    a = ap.parse_args()
    if not a.no_sb3:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            print("stable-baselines3 not installed (pip install -e '.[bench]'): no peer figure")
            a.no_sb3 = True
    cs = contenders(a.compile, a.quick, not a.no_sb3)

    ctx = mp.get_context("spawn")  # fresh interpreters: nothing of the parent's process state leaks in
    pipes = []
    for c in cs:  # built one at a time, so construction and warm-up never compete for the cores
        parent, child = ctx.Pipe()
        ctx.Process(target=_worker, args=(child, c, a), daemon=True).start()
        child.close()  # the worker holds the only other end: if it dies, recv() raises instead of waiting
        try:
            warm_s = parent.recv()
        except EOFError:
            raise SystemExit(f"{c.name}: its worker process died (traceback above)") from None
        if c.compiled:
            print(f"{c.name}: first 2 updates (compiling) took {warm_s:.0f} s", flush=True)
        pipes.append(parent)
    rates: dict[Contender, list[float]] = {c: [] for c in cs}
    for _ in range(a.rounds):
        for c, pipe in zip(cs, pipes):
            pipe.send(a.updates)
            rates[c].append(pipe.recv())
    for pipe in pipes:
        pipe.send(None)

    print(f"machine: {machine(a.threads)}, device {a.device}")
    if a.experiment:
        _, cfg, env = experiment_task(a.experiment)
        shapes = experiment_shapes(a.experiment, cfg, env.observation_space)
        env.close()
    else:
        shapes = f"{a.frames}x{a.image}x{a.image} uint8 + 53, batch {a.batch}"
    print(f"shapes: {shapes}; {a.rounds} rounds x {a.updates} updates (replay sampling included); one process "
          f"per contender")
    peers = [p for p in (SB3_DEFAULT, SB3_TUNED) if p in rates]
    header = "".join(f"  vs {'SB3 default' if p is SB3_DEFAULT else 'SB3 same alloc.':>25s}" for p in peers)
    print(f"{'':62s} {'updates/s':>10s}{header}")
    for c, r in rates.items():
        cells = ""
        for p in peers:  # per-round ratios: each round times every contender back to back
            per_round = [x / y for x, y in zip(r, rates[p])]
            cells += f"  {median(per_round):5.2f}x (rounds {min(per_round):.2f}-{max(per_round):.2f})"
        print(f"{c.name:62s} {median(r):10.2f}{cells}")
    print("targets: separate float32 >= 1.5x, shared float32 >= 3x SB3 (bf16 rows change results at bf16 "
          "precision and are not counted)")


if __name__ == "__main__":
    main()

"""TD3 update throughput against Stable-Baselines3 on SPEC's architecture, in one process run.

Both sides: separate NatureCNN encoders for actor and critic (SB3: share_features_extractor=False),
4x84x84 uint8 images + a 53-float vector (SB3: MultiInputPolicy, its CombinedExtractor with a 512-wide
NatureCNN, the equal of SPEC's network), MLPs 256-256, twin critics, policy delay 2, batch 256, the
same replay contents. Ours runs with gradient diagnostics on (clipping=reference, every value fetched
each update). Rounds alternate between the contenders; the ratio is the median of per-round ratios.

    python benchmarks/bench_update.py                  # CPU, 2 threads
    python benchmarks/bench_update.py --device cuda    # GPU, SB3 on the same GPU
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from av_td3.logger import UpdateLog
from av_td3.replay import ReplayBuffer
from bench_replay import fill
from common import machine, make_agent, median, rate, reference_clipping


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
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (1, frames, image, image), dtype=np.uint8),
           "vector": rng.normal(size=(1, 53)).astype(np.float32)}
    for _ in range(n_fill):
        model.replay_buffer.add(obs, obs, rng.uniform(-1, 1, (1, 2)).astype(np.float32),
                                np.zeros(1, np.float32), np.zeros(1, bool), [{}])
    model._setup_learn(total_timesteps=1)  # creates the logger train() writes to
    return model


SB3 = "SB3 TD3 (separate encoders)"


def build_contenders(image: int, frames: int, batch: int, device: str, n_fill: int, compiled: bool,
                     sb3: bool) -> dict[str, Callable[[], None]]:
    """One training step each (replay sampling included), on the same replay contents. Ours logs like
    the trainer at its most expensive setting: every gradient diagnostic fetched after every update."""
    buf = ReplayBuffer(n_fill + 10, (frames, image, image), 53, 2, device=device)
    fill(buf, n_fill, frames, image)
    contenders: dict[str, Callable[[], None]] = {}
    for encoder in ("separate", "shared"):
        for compile_ in (False, True) if compiled else (False,):
            agent = make_agent(image, frames, batch, device, reference_clipping(), encoder=encoder,
                               compile=compile_)
            log = UpdateLog()

            def step(agent=agent, log=log):
                log.record(agent.update(*buf.sample(batch)), 0)
                log.fetch({n: g.health() for n, g in agent.guarded_steps().items()})

            name = f"av-td3 TD3 ({encoder} encoders{', compiled' if compile_ else ''}, diagnostics on)"
            contenders[name] = step
    if sb3:
        try:
            model = sb3_model(image, frames, batch, device, n_fill)
            contenders[SB3] = lambda: model.train(gradient_steps=1, batch_size=batch)
        except ImportError:
            print("stable-baselines3 not installed (pip install -e '.[bench]'): no peer figure")
    return contenders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=int, default=84)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--updates", type=int, default=6, help="updates per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fill", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-sb3", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time av-td3 with agent.compile=true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    contenders = build_contenders(a.image, a.frames, a.batch, a.device, a.fill, a.compile, not a.no_sb3)
    for name, fn in contenders.items():  # warm-up (allocator, lazy init, compilation)
        warm = rate(fn, 2, a.device)
        if "compiled" in name:
            print(f"{name}: first 2 updates (compiling) took {2 / warm:.0f} s", flush=True)
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(a.rounds):
        for name, fn in contenders.items():
            rates[name].append(rate(fn, a.updates, a.device))
    print(f"machine: {machine()}, device {a.device}")
    print(f"shapes: {a.frames}x{a.image}x{a.image} uint8 + 53, batch {a.batch}; "
          f"{a.rounds} rounds x {a.updates} updates (including replay sampling)")
    peer = rates.get(SB3)
    for name, r in rates.items():
        ratio = ""
        if peer:  # per-round ratios: each round times every contender back to back, so drift cancels
            per_round = [x / y for x, y in zip(r, peer)]
            ratio = f"  = {median(per_round):.2f}x SB3 (rounds {min(per_round):.2f}-{max(per_round):.2f})"
        print(f"{name:58s} {median(r):8.2f} updates/s{ratio}")


if __name__ == "__main__":
    main()

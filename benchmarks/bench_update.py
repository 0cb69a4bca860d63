"""TD3 update throughput against Stable-Baselines3 on SPEC's architecture, in one process run.

Both sides: separate NatureCNN encoders for actor and critic (SB3: share_features_extractor=False),
4x84x84 uint8 images + a 53-float vector (SB3: MultiInputPolicy, its CombinedExtractor with a 512-wide
NatureCNN, the equal of SPEC's network), MLPs 256-256, twin critics, policy delay 2, batch 256, the
same replay contents. Ours runs with gradient diagnostics on (clipping=reference, every value fetched
each update). Rounds alternate between the contenders; medians are reported.

    python benchmarks/bench_update.py                  # CPU, 2 threads
    python benchmarks/bench_update.py --device cuda    # GPU, SB3 on the same GPU
"""

from __future__ import annotations

import argparse

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

    buf = ReplayBuffer(a.fill + 10, (a.frames, a.image, a.image), 53, 2, device=a.device)
    fill(buf, a.fill, a.frames, a.image)
    contenders = {}
    for encoder in ("separate", "shared"):
        for compiled in (False, True) if a.compile else (False,):
            agent = make_agent(a.image, a.frames, a.batch, a.device, reference_clipping(), encoder=encoder,
                               compile=compiled)
            log = UpdateLog()

            def step(agent=agent, log=log):
                log.record(agent.update(*buf.sample(a.batch)), 0)
                log.fetch({n: g.health() for n, g in agent.guarded_steps().items()})

            name = f"av-td3 TD3 ({encoder} encoders{', compiled' if compiled else ''}, diagnostics on)"
            contenders[name] = step
    if not a.no_sb3:
        try:
            model = sb3_model(a.image, a.frames, a.batch, a.device, a.fill)
            contenders["SB3 TD3 (separate encoders)"] = lambda: model.train(gradient_steps=1,
                                                                              batch_size=a.batch)
        except ImportError:
            print("stable-baselines3 not installed (pip install -e '.[bench]'): no peer figure")
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
    peer = median(rates["SB3 TD3 (separate encoders)"]) if "SB3 TD3 (separate encoders)" in rates else None
    for name, r in rates.items():
        ratio = f"  = {median(r) / peer:.2f}x SB3" if peer else ""
        print(f"{name:58s} {median(r):8.2f} updates/s{ratio}")


if __name__ == "__main__":
    main()

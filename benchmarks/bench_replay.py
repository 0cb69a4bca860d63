"""Replay memory per transition, against Stable-Baselines3's buffers, and the cost of sampling a batch
relative to one TD3 update, in one run.

    python benchmarks/bench_replay.py              # SPEC shapes: 4x84x84 uint8 stack + 53 floats
"""

from __future__ import annotations


import numpy as np
import torch

from av_td3.allocator import tune_allocator
from av_td3.envs.contract import FrameStack
from av_td3.replay import ReplayBuffer
from common import machine, make_agent, median, rate, reference_clipping, update_parser


def fill(buf: ReplayBuffer, n: int, frames: int, image: int, seed: int = 0, vector: int = 53,
         width: int | None = None) -> None:
    """``n`` transitions of random frames (``image`` x ``width`` pixels) and vectors, episodes of 500."""
    rng = np.random.default_rng(seed)
    width = width or image
    fs = FrameStack(frames, image, width)
    obs = {"image": fs.push(rng.integers(0, 256, (image, width), dtype=np.uint8)),
           "vector": np.zeros(vector, np.float32)}
    for t in range(n):
        nxt = {"image": fs.push(rng.integers(0, 256, (image, width), dtype=np.uint8)),
               "vector": rng.normal(size=vector).astype(np.float32)}
        end = t % 500 == 499
        buf.add(obs, rng.uniform(-1, 1, 2).astype(np.float32), 0.0, nxt, False, end)
        if end:
            fs.reset()
            nxt = {"image": fs.push(rng.integers(0, 256, (image, width), dtype=np.uint8)),
                   "vector": nxt["vector"]}
        obs = nxt


def sb3_bytes_per_transition(frames: int, image: int) -> dict[str, float]:
    """Bytes per transition of SB3's buffers for the same observation (measured on its arrays)."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer as SB3Replay

    n = 1000
    img = spaces.Box(0, 255, (frames, image, image), np.uint8)
    vec = spaces.Box(-np.inf, np.inf, (53,), np.float32)
    act = spaces.Box(-1, 1, (2,), np.float32)
    out = {}
    d = DictReplayBuffer(n, spaces.Dict({"image": img, "vector": vec}), act, device="cpu")
    arrays = [*d.observations.values(), *d.next_observations.values(), d.actions, d.rewards, d.dones,
              d.timeouts]
    out["SB3 DictReplayBuffer (image+vector)"] = sum(a.nbytes for a in arrays) / n
    r = SB3Replay(n, img, act, device="cpu", optimize_memory_usage=True, handle_timeout_termination=False)
    arrays = [r.observations, r.actions, r.rewards, r.dones]
    out["SB3 ReplayBuffer optimize_memory_usage (image only)"] = sum(a.nbytes for a in arrays) / n
    return out


def main() -> None:
    ap = update_parser(__doc__, updates=1)
    ap.add_argument("--fill", type=int, default=20_000)
    a = ap.parse_args()
    tune_allocator()  # as every av-td3 training process does (av_td3/allocator.py)
    torch.set_num_threads(a.threads)
    buf = ReplayBuffer(a.fill + 10, (a.frames, a.image, a.image), 53, 2)
    fill(buf, a.fill, a.frames, a.image)
    ours = buf.bytes_per_transition()
    print(f"machine: {machine()}")
    print(f"observation: {a.frames}x{a.image}x{a.image} uint8 + 53 float32, action 2 float32")
    print(f"av-td3 ReplayBuffer: {ours:10,.0f} B/transition  -> 1M transitions = {ours * 1e6 / 2**30:.2f} GiB")
    try:
        for name, b in sb3_bytes_per_transition(a.frames, a.image).items():
            print(f"{name}: {b:10,.0f} B/transition  (ours is {b / ours:.1f}x smaller)")
    except ImportError:
        print("stable-baselines3 not installed (pip install -e '.[bench]'): no peer figure")
    sample_rate = median([rate(lambda: buf.sample(a.batch), 20, "cpu") for _ in range(3)])
    agent = make_agent(a.image, a.frames, a.batch, "cpu", reference_clipping())
    batch = buf.sample(a.batch)
    agent.update(*batch)
    update_rate = median([rate(lambda: agent.update(*batch), 3, "cpu") for _ in range(3)])
    print(f"sample batch {a.batch}: {1e3 / sample_rate:.2f} ms; TD3 update: {1e3 / update_rate:.0f} ms; "
          f"sampling = {100 * update_rate / sample_rate:.2f}% of an update (target <= 5%)")


if __name__ == "__main__":
    main()

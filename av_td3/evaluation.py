"""Deterministic evaluation on its own env instance: N episodes from fixed seeds, no buffer writes.

Per-episode figures come from the per-step quantities every driving env reports in ``info``; envs
without them (plain Gymnasium tasks) report return and length only.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def evaluate(agent, env: gym.Env, seeds: list[int]) -> dict[str, float]:
    episodes = [run_episode(agent, env, seed) for seed in seeds]
    summary = {"mean_reward": float(np.mean([e["return"] for e in episodes])),
               "avg_episode_length": float(np.mean([e["length"] for e in episodes]))}
    if all("success" in e for e in episodes):
        summary["success_rate"] = float(np.mean([e["success"] for e in episodes]))
    for key, name in (("collisions", "avg_collisions"), ("lane_invasions", "avg_lane_invasions")):
        if all(key in e for e in episodes):
            summary[name] = float(np.mean([e[key] for e in episodes]))
    return summary


def run_episode(agent, env: gym.Env, seed: int) -> dict[str, float]:
    obs, _ = env.reset(seed=seed)
    total, length, counts, success = 0.0, 0, {"collisions": 0, "lane_invasions": 0}, None
    driving = False
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, explore=False))
        total += float(reward)
        length += 1
        if "collision" in info:
            driving = True
            counts["collisions"] += int(info["collision"])
            counts["lane_invasions"] += int(info["lane_invasion"])
        if "is_success" in info:
            success = bool(info["is_success"]) or bool(success)
        if terminated or truncated:
            break
    out: dict[str, float] = {"return": total, "length": length}
    if driving:
        out |= counts
    if success is not None:
        out["success"] = float(success)
    return out

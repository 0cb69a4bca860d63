"""Deterministic evaluation on its own env instance: N episodes from fixed seeds, no buffer writes.

Each episode is scored by ``av_td3.metrics`` from the per-step quantities every driving env reports in
``info``; the phase's figures are ``metrics.aggregate`` of its episodes' (the keys the trainer logs as
``eval/<key>`` and writes to results.json). Envs without those quantities (plain Gymnasium tasks) report
``mean_reward`` and ``avg_episode_length`` only.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from av_td3.envs.errors import EpisodeLost
from av_td3.metrics import EpisodeMetrics, aggregate


def evaluate(agent, env: gym.Env, seeds: list[int], recorder=None,
             on_lost: Callable[[EpisodeLost], None] | None = None) -> dict[str, float]:
    """``recorder`` (``av_td3.video.EpisodeFrames``): records the first episode's frames. An episode the
    simulator loses (``EpisodeLost``: the env has been rebuilt) is run again from the same seed, after
    ``on_lost(error)``; the env bounds the retries (it raises EnvFailed after env.max_reconnects in a row)."""
    episodes = []
    for i, seed in enumerate(seeds):
        while True:
            if recorder is not None and i == 0:
                recorder.frames.clear()  # a rerun records afresh
            try:
                episodes.append(run_episode(agent, env, seed, recorder if i == 0 else None))
                break
            except EpisodeLost as e:
                if on_lost is None:
                    raise
                on_lost(e)
    return aggregate(episodes)


def run_episode(agent, env: gym.Env, seed: int, recorder=None) -> dict[str, float]:
    """One deterministic episode from ``seed``; its per-episode metrics (``EpisodeMetrics.result``)."""
    if hasattr(agent, "reset"):  # a stateful controller (the classical agent's PID) starts afresh
        agent.reset()
    obs, _ = env.reset(seed=seed)
    episode = EpisodeMetrics()
    if recorder is not None:
        recorder.add(obs, env)
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        episode.add(reward, info)
        if recorder is not None:
            recorder.add(obs, env)
        if terminated or truncated:
            return episode.result()

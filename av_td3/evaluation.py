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


def driven(agent, weights: str | None = None):
    """What an evaluation of ``agent`` drives: with ``weights`` None, its ``evaluation_policy()`` where it has
    one (TD3: its averaged weights when agent.policy_average keeps them), else the agent itself; "trained" or
    "averaged" (``av-td3 evaluate --weights``) picks those weights, ValueError where the agent has none."""
    averaged = None if weights is None else weights == "averaged"
    if hasattr(agent, "evaluation_policy"):
        return agent.evaluation_policy(averaged)
    if averaged:
        raise ValueError(f"{type(agent).__name__} keeps no averaged weights")
    return agent


def evaluate(agent, env: gym.Env, seeds: list[int], recorder=None,
             on_lost: Callable[[EpisodeLost], None] | None = None, routes: list[str] | None = None) -> dict[str, float]:
    """The phase's figures over its episodes (``evaluate_by_route``'s first result)."""
    return evaluate_by_route(agent, env, seeds, recorder, on_lost, routes)[0]


def evaluate_by_route(agent, env: gym.Env, seeds: list[int], recorder=None,
                      on_lost: Callable[[EpisodeLost], None] | None = None, routes: list[str] | None = None
                      ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(the phase's figures, {route: its episodes' figures}). Episode i runs from ``seeds[i]`` on
    ``routes[i % len(routes)]`` (the env's own road when ``routes`` is None).

    ``recorder`` (``av_td3.video.EpisodeFrames``): records the first episode's frames. An episode the
    simulator loses (``EpisodeLost``: the env has been rebuilt) is run again from the same seed, after
    ``on_lost(error)``; the env bounds the retries (it raises EnvFailed after env.max_reconnects in a row)."""
    episodes: list[dict[str, float]] = []
    by_route: dict[str, list[dict[str, float]]] = {}
    for i, seed in enumerate(seeds):
        route = routes[i % len(routes)] if routes else None
        while True:
            if recorder is not None and i == 0:
                recorder.frames.clear()  # a rerun records afresh
            try:
                episode = run_episode(agent, env, seed, recorder if i == 0 else None, route)
                break
            except EpisodeLost as e:
                if on_lost is None:
                    raise
                on_lost(e)
        episodes.append(episode)
        if route is not None:
            by_route.setdefault(route, []).append(episode)
    return aggregate(episodes), {r: aggregate(eps) for r, eps in by_route.items()}


def run_episode(agent, env: gym.Env, seed: int, recorder=None, route: str | None = None) -> dict[str, float]:
    """One deterministic episode from ``seed`` (on ``route``, one of the env's routes); its per-episode
    metrics (``EpisodeMetrics.result``)."""
    if hasattr(agent, "reset"):  # a stateful controller (the classical agent's PID) starts afresh
        agent.reset()
    obs, _ = env.reset(seed=seed, options=None if route is None else {"route": route})
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


class FrozenInput(gym.Wrapper):
    """The observation's ``key`` held at its value from the episode's reset (``av-td3 evaluate
    --freeze``): the env drives on, the policy no longer sees that input change."""

    def __init__(self, env: gym.Env, key: str):
        super().__init__(env)
        self.key = key

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._held = obs[self.key]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {**obs, self.key: self._held}, reward, terminated, truncated, info

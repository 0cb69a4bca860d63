"""envs/traffic.py: the broad phases change no step (against highway-env's own Road and RoadNetwork),
and the level of detail moves far NPCs cleanly and without collisions."""

import math

import numpy as np
import pytest
from highway_env.road.road import RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle

from av_td3.config import ConfigError
from av_td3.config.env import HighwayEnvConfig
from av_td3.envs.highway import HighwayDrivingEnv, PlainHighwayDrivingEnv, build_road
from av_td3.envs.traffic import TrafficRoad

from test_highway_env import pure_pursuit

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")

HEAVY = 100  # scenario=heavy's npc_vehicles: 25 NPCs on the route


def drive(env, steps: int, seed: int = 0):
    """Pure pursuit with action noise (lane invasions, speed changes), episodes reset with seeds seed, seed
    + 1, ...: every step's (observation, reward, terminated, truncated, info)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode, out = seed, []
    for _ in range(steps):
        action = np.clip(pure_pursuit(obs) + rng.normal(0.0, 0.3, 2), -1, 1).astype(np.float32)
        step = env.step(action)
        out.append(step)
        obs = step[0]
        if step[2] or step[3]:
            episode += 1
            obs, _ = env.reset(seed=episode)
    return out


def test_inf_radius_is_bit_identical_to_highway_env_road_over_2000_steps():
    cfg = HighwayEnvConfig(image_height=24, image_width=24, npc_lod_radius=math.inf)
    ours, plain = drive(HighwayDrivingEnv(cfg, HEAVY), 2000), drive(PlainHighwayDrivingEnv(cfg, HEAVY), 2000)
    collisions = sum(s[4]["collision"] for s in plain)
    assert collisions > 0  # the traffic interacts with the ego: the comparison covers collisions too
    for t, (a, b) in enumerate(zip(ours, plain)):
        assert np.array_equal(a[0]["image"], b[0]["image"]) and np.array_equal(a[0]["vector"], b[0]["vector"]), t
        assert a[1:4] == b[1:4], t
        assert repr(a[4]) == repr(b[4]), t  # floats bit for bit (repr round-trips), inf and nan included


def test_closest_lane_search_matches_road_network_everywhere():
    cfg = HighwayEnvConfig()
    ours, _ = build_road(cfg)
    plain, _ = build_road(cfg, RoadNetwork)
    rng = np.random.default_rng(0)
    points = rng.uniform([-40.0, -70.0], [220.0, 15.0], (3000, 2))
    for p, heading in zip(points, rng.uniform(-math.pi, math.pi, len(points))):
        assert ours.get_closest_lane_index(p, heading) == plain.get_closest_lane_index(p, heading)
        assert ours.get_closest_lane_index(p) == plain.get_closest_lane_index(p)


def _npcs(env) -> list[IDMVehicle]:
    return [v for v in env.road.vehicles if v is not env.ego]


def test_far_npcs_move_along_their_lane_and_switch_without_a_jump():
    """A small radius, so NPCs cross it both ways many times: no position or speed jump at any step, far
    NPCs stay on their lane, and the far tier is actually used."""
    cfg = HighwayEnvConfig(image_height=24, image_width=24, npc_lod_radius=25.0)
    env = HighwayDrivingEnv(cfg, HEAVY)
    obs, _ = env.reset(seed=3)
    dt, switches, far_steps = env.dt, 0, 0
    prev = {id(v): (v.position.copy(), v.speed, None) for v in _npcs(env)}
    for _ in range(600):
        obs, _, terminated, truncated, _ = env.step(pure_pursuit(obs, target_speed=6.0))
        for v in _npcs(env):
            if id(v) not in prev:
                continue
            position, speed, was_far = prev[id(v)]
            far = bool(math.hypot(*(position - env.ego.position)) > cfg.npc_lod_radius)
            moved = float(np.linalg.norm(v.position - position))
            assert moved <= abs(speed) * dt + 1e-6 + 0.05, (moved, speed)  # 5 cm: a full NPC's steering
            assert abs(v.speed - speed) <= IDMVehicle.ACC_MAX * dt + 1e-9
            switches += was_far is not None and far != was_far
            far_steps += far
        prev = {id(v): (v.position.copy(), v.speed, bool(math.hypot(*(v.position - env.ego.position))
                                                          > cfg.npc_lod_radius)) for v in _npcs(env)}
        if terminated or truncated:
            break
    assert switches >= 5 and far_steps > 1000


def test_far_npcs_do_not_run_into_each_other():
    """With the ego standing at the start, every NPC past 10 m is far for 1,000 steps: IDM against the
    vehicle ahead on its lane keeps them apart (no overlapping bodies), and they keep moving."""
    cfg = HighwayEnvConfig(image_height=24, image_width=24, npc_lod_radius=10.0, max_episode_steps=2000)
    env = HighwayDrivingEnv(cfg, HEAVY)
    env.reset(seed=1)
    start = {id(v): v.position.copy() for v in _npcs(env)}
    for _ in range(1000):
        env.step(np.array([0.0, -1.0], dtype=np.float32))
        npcs = _npcs(env)
        for i, a in enumerate(npcs):
            for b in npcs[i + 1:]:
                if a.lane_index == b.lane_index:
                    assert np.linalg.norm(a.position - b.position) >= a.LENGTH, (a, b)
    assert not any(v.crashed for v in _npcs(env))
    moved = [np.linalg.norm(v.position - start[id(v)]) for v in _npcs(env) if id(v) in start]
    assert moved and min(moved) > 5.0


def test_a_radius_that_is_not_positive_is_rejected():
    with pytest.raises(ConfigError, match="env.npc_lod_radius"):
        HighwayEnvConfig(npc_lod_radius=0.0)
    with pytest.raises(ValueError, match="lod_radius"):
        TrafficRoad(RoadNetwork(), np.random.RandomState(0), lod_radius=-1.0)

"""env.camera and env.vector: the observation, replay and networks follow them; env.friction caps the
ego's lateral acceleration."""

import math

import numpy as np
import pytest
import torch

from av_td3.agents.spec import AgentSpec
from av_td3.agents.td3 import TD3Agent
from av_td3.config import CarlaEnvConfig, ClippingConfig, ConfigError, HighwayEnvConfig
from av_td3.envs.contract import (ACCELERATION_SCALE, IMAGE, MINIMAL_VECTOR_SIZE, SPEED_SCALE, VECTOR,
                                  VECTOR_SIZE)
from av_td3.envs.highway import HighwayDrivingEnv
from av_td3.replay import ReplayBuffer


def small(**kw):
    return HighwayEnvConfig(image_height=36, image_width=36, **kw)


@pytest.mark.parametrize("camera", ["topdown", "dashcam", "none"])
@pytest.mark.parametrize("vector, size", [("reference", VECTOR_SIZE), ("minimal", MINIMAL_VECTOR_SIZE), ("none", 0)])
def test_the_observation_follows_camera_and_vector(camera, vector, size):
    if camera == "none" and vector == "none":
        with pytest.raises(ConfigError, match="nothing to observe"):
            small(camera=camera, vector=vector)
        return
    env = HighwayDrivingEnv(small(camera=camera, vector=vector), 5)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert (IMAGE in obs) == (camera != "none") and obs[VECTOR].shape == (size,)


def test_the_minimal_vector_is_speed_acceleration_action_and_command():
    env = HighwayDrivingEnv(small(camera="none", vector="minimal", route_file="left_90_r9.csv"), 0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[VECTOR], [0, 0, 0, 0, 1, 0, 0, 1])  # at rest, following the lane
    for _ in range(30):
        obs, _, _, _, info = env.step(np.array([0.1, 0.7]))
    v = obs[VECTOR]
    assert v[0] == pytest.approx(info["speed"] / SPEED_SCALE)
    assert v[1] == pytest.approx(info["longitudinal_acceleration"] / ACCELERATION_SCALE)
    np.testing.assert_allclose(v[2:4], [0.1, 0.7], rtol=1e-6)  # the action the ego drove with
    # Move the ego to 20 m before the left turn: command left, distance 20 / 30.
    start = env.route.turns()[0][0]
    env.ego.position = env.route.point_at(start - 20.0).copy()
    obs, *_ = env.step(np.array([0.0, -1.0]))
    assert list(obs[VECTOR][4:7]) == [0, 1, 0]
    assert obs[VECTOR][7] == pytest.approx((20.0 - env.ego.speed * env.dt) / 30.0, abs=0.02)


def test_minimal_and_none_reject_the_reference_s_extra_features():
    with pytest.raises(ConfigError, match="env.observe_obstacle: extends env.vector=reference only"):
        small(vector="minimal", observe_obstacle=True)
    with pytest.raises(ConfigError, match="env.camera"):
        CarlaEnvConfig(camera="topdown")
    with pytest.raises(ConfigError, match="env.camera: must be one of"):
        small(camera="fisheye")


def agent_for(env):
    spec = AgentSpec.from_spaces(env.observation_space, env.action_space, torch.device("cpu"), ClippingConfig())
    agent = TD3Agent(spec, [8, 16], [4, 3], [2, 1], 32, [32, 32], "shared", 2, 1e-3, 1e-3, 0.0, 0.99, 0.005,
                     0.2, 0.5, 2, 8)
    return spec, agent


@pytest.mark.parametrize("camera, vector", [("none", "reference"), ("dashcam", "none"), ("dashcam", "minimal")])
def test_replay_and_networks_follow_the_observation(camera, vector):
    env = HighwayDrivingEnv(small(camera=camera, vector=vector, frame_stack=2), 5)
    spec, agent = agent_for(env)
    assert (agent.critic.encoder is None) == (camera == "none")  # no image: no CNN
    replay = ReplayBuffer(64, spec.image_shape, spec.vector_size, spec.action_dim, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        a = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(a)
        replay.add(obs, a, r, nxt, term, trunc)
        obs = nxt
    batch = replay.sample(8, 1, 0.99)
    for _ in range(2):
        metrics = agent.update(*batch)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert agent.act(obs).shape == (2,)


def peak_lateral_acceleration(friction):
    env = HighwayDrivingEnv(small(camera="none", friction=friction, random_start=1.0, random_start_speed=15.0), 0)
    env.reset(seed=0)
    env.ego.speed = 15.0
    peak = 0.0
    for _ in range(15):
        _, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
        peak = max(peak, abs(info["lateral_acceleration"]))
        if terminated:
            break
    return peak


def test_friction_caps_lateral_acceleration():
    assert peak_lateral_acceleration(math.inf) > 30.0  # the kinematic bicycle alone turns at any speed
    assert peak_lateral_acceleration(0.8) == pytest.approx(0.8 * 9.81, rel=1e-3)  # understeer at the limit


def test_steering_lag_smooths_lock_to_lock_commands():
    def yaw_swing(tau):
        env = HighwayDrivingEnv(small(camera="none", steer_time_constant=tau), 0)
        env.reset(seed=0)
        env.ego.speed = 8.0
        heading = []
        for t in range(40):  # full left, full right, every frame
            _, _, _, _, info = env.step(np.array([1.0 if t % 2 else -1.0, 0.3]))
            heading.append(info["heading_error"])
        return np.abs(np.diff(heading)).mean(), env  # how far the car turns per frame

    instant, _ = yaw_swing(0.0)
    lagged, env = yaw_swing(0.3)
    assert lagged < instant / 5  # the rack averages the flips out
    assert abs(env._steer) < 0.1
    env = HighwayDrivingEnv(small(camera="none", steer_time_constant=0.3), 0)
    env.reset(seed=0)
    for _ in range(60):  # a held command is reached: 1 - exp(-3 s / 0.3 s)
        env.step(np.array([0.5, 0.0]))
    assert env._steer == pytest.approx(0.5, rel=1e-3)


def test_the_smoothness_penalty_pulls_consecutive_actions_together():
    torch.manual_seed(0)
    env = HighwayDrivingEnv(small(camera="none", vector="reference"), 0)
    spec, _ = agent_for(env)
    obs = {"vector": torch.randn(32, spec.vector_size)}
    nxt = {"vector": torch.randn(32, spec.vector_size)}
    batch = (obs, torch.zeros(32, 2), torch.zeros(32), nxt, torch.ones(32))
    gaps = {}
    for penalty in (0.0, 10.0):
        torch.manual_seed(1)
        agent = TD3Agent(spec, [8, 16], [4, 3], [2, 1], 32, [32, 32], "shared", 2, 1e-3, 1e-3, 0.0, 0.99, 0.005,
                         0.2, 0.5, 2, 32, smoothness_penalty=penalty)
        for _ in range(200):
            agent.update(*batch)
        with torch.no_grad():
            gaps[penalty] = (agent.actor(obs["vector"][:, :0], obs["vector"]) - agent.actor(nxt["vector"][:, :0], nxt["vector"])).abs().mean()
    assert gaps[10.0] < gaps[0.0] / 2

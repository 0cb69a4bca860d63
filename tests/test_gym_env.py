"""The Gymnasium adapter (env=gym): spaces, action rescaling, time limit, pixel stacks, check_env, and a
tiny real training run on Pendulum-v1 through the entrypoint."""

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from av_td3.agents.spec import AgentSpec
from av_td3.config import ClippingConfig, GymEnvConfig
from av_td3.envs.gym import make_gym_env
from av_td3.replay import ReplayBuffer


def test_pendulum_spaces_and_check_env():
    env = make_gym_env(GymEnvConfig(id="Pendulum-v1"), role="train")
    assert set(env.observation_space.spaces) == {"vector"}
    vec = env.observation_space["vector"]
    assert vec.shape == (3,) and vec.dtype == np.float32
    assert env.action_space == spaces.Box(-1.0, 1.0, (1,), np.float32)
    spec = AgentSpec.from_spaces(env.observation_space, env.action_space, torch.device("cpu"),
                                 ClippingConfig())
    assert spec.image_shape is None and spec.vector_size == 3 and spec.action_dim == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the env is wrapped": that is the point here
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["vector"].dtype == np.float32 and env.observation_space.contains(obs)


@pytest.mark.parametrize("action, torque", [(-1.0, -2.0), (0.0, 0.0), (0.5, 1.0), (1.0, 2.0)])
def test_actions_are_rescaled_from_the_agents_range(action, torque):
    env = make_gym_env(GymEnvConfig(id="Pendulum-v1"), role="eval")
    env.reset(seed=0)
    env.step(np.array([action], np.float32))
    assert env.unwrapped.last_u == pytest.approx(torque)  # Pendulum's torque bounds are [-2, 2]


def test_time_limit_from_config():
    env = make_gym_env(GymEnvConfig(id="Pendulum-v1", max_episode_steps=7), role="train")
    env.reset(seed=0)
    for k in range(7):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated and truncated == (k == 6)


def test_discrete_actions_are_a_clear_error():
    with pytest.raises(ValueError, match="Box"):
        make_gym_env(GymEnvConfig(id="CartPole-v1"), role="train")


class TinyPixels(gym.Env):
    """RGB 12x10 frames whose every pixel equals the step count."""

    observation_space = spaces.Box(0, 255, (12, 10, 3), np.uint8)
    action_space = spaces.Box(-3.0, 3.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 1
        return np.full((12, 10, 3), self.k, np.uint8), {}

    def step(self, action):
        self.k += 1
        return np.full((12, 10, 3), self.k, np.uint8), 0.0, False, False, {}


gym.register("TinyPixels-v0", entry_point=TinyPixels)


def test_pixel_observations_stack_grayscale_frames_like_the_camera():
    env = make_gym_env(GymEnvConfig(id="TinyPixels-v0", max_episode_steps=5, frame_stack=3), "train")
    assert env.observation_space["image"] == spaces.Box(0, 255, (3, 12, 10), np.uint8)
    assert env.observation_space["vector"].shape == (0,)
    obs, _ = env.reset(seed=0)
    assert [int(f[0, 0]) for f in obs["image"]] == [0, 0, 1]  # zeros before the first frame
    next_obs, *_ = env.step(env.action_space.sample())
    assert [int(f[0, 0]) for f in next_obs["image"]] == [0, 1, 2]  # oldest first
    # The replay buffer rebuilds exactly these stacks from one stored frame per step.
    buf = ReplayBuffer(16, (3, 12, 10), 0, 2, seed=0)
    buf.add(obs, np.zeros(2, np.float32), 0.0, next_obs, False, False)
    o, _, _, n, _ = buf.sample(1)
    assert torch.equal(o["image"][0], torch.as_tensor(obs["image"]))
    assert torch.equal(n["image"][0], torch.as_tensor(next_obs["image"]))
    obs, _ = env.reset(seed=1)
    assert [int(f[0, 0]) for f in obs["image"]] == [0, 0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


def test_tiny_pendulum_training_run_through_the_entrypoint(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "av_td3.train", "env=gym", "env.id=Pendulum-v1", "trainer.total_steps=250",
         "trainer.learning_starts=150", "trainer.eval_every=0", "trainer.eval_episodes=1",
         "trainer.checkpoint_every=0", "trainer.replay_capacity=1000", "trainer.progress_bar=false",
         "agent.hidden_dims=[32,32]", "agent.batch_size=32", "device=cpu", "torch_threads=1",
         f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["updates"] == 101  # steps 150..250
    assert set(results["final_eval"]) == {"mean_reward", "avg_episode_length"}
    assert results["final_eval"]["avg_episode_length"] == 200.0
    assert (run / "DONE").exists()

"""benchmarks/lane_keeping.py's account of a collision: where the other car was in the ego's frame, on a real
highway-env road (the ego heading along the route, the other car placed by hand)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from av_td3.config.env import HighwayEnvConfig
from av_td3.envs.highway import HighwayDrivingEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lane_keeping.py"


def lane_keeping():
    spec = importlib.util.spec_from_file_location("lane_keeping", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def env():
    env = HighwayDrivingEnv(HighwayEnvConfig(image_height=36, image_width=36), 20)  # 5 NPCs
    env.reset(seed=0)
    yield env
    env.close()


def clear(env):
    """Every NPC far away and not crashed."""
    for v in env.road.vehicles[1:]:
        v.position, v.crashed = env.ego.position + np.array([500.0, 500.0]), False


def place(env, forward: float, right: float, crashed: bool = False, which: int = 1):
    ego, other = env.ego, env.road.vehicles[which]
    c, s = math.cos(ego.heading), math.sin(ego.heading)
    other.position = ego.position + np.array([forward * c - right * s, forward * s + right * c])
    other.crashed = crashed
    return other


@pytest.mark.parametrize("forward, right, side", [(4.0, 0.0, "ahead"), (-6.0, 0.3, "behind"), (1.0, -2.2, "beside")])
def test_the_other_car_is_placed_in_the_egos_frame(env, forward, right, side):
    clear(env)
    other = place(env, forward, right, crashed=True)
    other.speed = 3.5
    told = lane_keeping().other_car(env)
    # "right" is the env's own sign: the route's lateral offset (+ right of the centre line) says the same
    lateral = env.route.project(other.position).lateral - env.route.project(env.ego.position).lateral
    assert lateral == pytest.approx(right, abs=0.3)
    assert told == f"the other car {side} ({forward:+.1f} m forward, {right:+.1f} m right) at 3.5 m/s"


def test_the_car_marked_crashed_is_the_one_met_even_when_another_is_nearer(env):
    clear(env)
    place(env, 3.0, 0.0, crashed=False, which=1)
    place(env, -5.5, 0.0, crashed=True, which=2)
    assert lane_keeping().other_car(env).startswith("the other car behind (-5.5 m forward")

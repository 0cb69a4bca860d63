"""The CARLA env against a real CARLA 0.9.16 server at CARLA_HOST:CARLA_PORT (default 127.0.0.1:2000).

Every test skips with "no CARLA server at host:port" when none answers within 2 s (checked once per
session). Start a server as docs/carla.md shows (docker image carlasim/carla:0.9.16, -RenderOffScreen).
"""

import math
import os

import numpy as np
import pytest

pytestmark = pytest.mark.carla

HOST = os.environ.get("CARLA_HOST") or "127.0.0.1"
PORT = int(os.environ.get("CARLA_PORT") or 2000)
COMPONENTS = {"efficiency", "lane_keeping", "comfort", "safety", "progress"}


@pytest.fixture(scope="session")
def client():
    """A client of the test server; a session fixture, so the 2 s probe runs (and skips) once."""
    carla = pytest.importorskip("carla", reason="the carla==0.9.16 client wheel is not installed")
    c = carla.Client(HOST, PORT)
    c.set_timeout(2.0)
    try:
        c.get_server_version()
    except RuntimeError:
        pytest.skip(f"no CARLA server at {HOST}:{PORT}")
    c.set_timeout(60.0)  # the first env may load Town01
    return c


@pytest.fixture
def make_env(client):
    """make_env(npc_vehicles, role=..., **cfg) -> a CarlaDrivingEnv, closed after the test."""
    from av_td3.config import CarlaEnvConfig
    from av_td3.envs.carla.env import CarlaDrivingEnv

    made = []

    def _make(npc_vehicles=0, role="train", job_num=0, **overrides):
        cfg = CarlaEnvConfig(host=HOST, port=PORT, reconnect_delay=0.5, **overrides)
        env = CarlaDrivingEnv(cfg, npc_vehicles=npc_vehicles, role=role, job_num=job_num)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


def our_actors(client) -> list:
    """Vehicles and sensors this test suite's envs spawned (they carry the av_td3 role_name tag)."""
    return [a for a in client.get_world().get_actors()
            if str(a.attributes.get("role_name", "")).startswith("av_td3:")]


def counts(client) -> tuple[int, int]:
    actors = client.get_world().get_actors()
    return len(actors.filter("vehicle.*")), len(actors.filter("sensor.*"))


def test_reset_and_step_keep_the_contract(make_env):
    env = make_env(npc_vehicles=5, max_episode_steps=10)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["image"][:-1].max() == 0 and obs["image"][-1].max() > 0  # zeros, then the first frame
    assert abs(obs["vector"][1] * 3.5) < 0.5  # spawned on the route's lane centre
    assert info["npc_vehicles"] == 5
    for t in range(10):
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.6], dtype=np.float32))
        assert env.observation_space.contains(obs) and math.isfinite(reward)
        assert set(info["reward_components"]) == COMPONENTS
        assert info["dt"] == pytest.approx(0.05, abs=1e-3)  # simulated time, one tick per step
        assert "is_success" in info and "time_to_collision" in info
        if terminated:
            break
    assert info["speed"] > 0.5 and info["progress"] > 0
    assert truncated or terminated


def test_route_lies_on_town01_lane_centres(make_env):
    from av_td3.envs.carla.routes import map_offsets

    env = make_env()
    offsets = map_offsets(env.route, env._map, step=2.0)
    straight = offsets[:, 2] == 0
    assert offsets[straight, 0].max() < 1.0, f"up to {offsets[straight, 0].max():.2f} m off the lane centres"
    assert math.degrees(offsets[straight, 1].max()) < 10.0  # on the right lane, in its direction
    assert offsets[:, 0].max() < 2.0  # the turn through the junction


def test_driving_into_a_parked_car_terminates_with_a_collision(make_env, client):
    import carla

    env = make_env(npc_vehicles=0)
    env.reset(seed=1)
    world = client.get_world()
    x, y = env.route.point_at(15.0)
    z = env._ego.get_transform().location.z
    bp = world.get_blueprint_library().find("vehicle.tesla.model3")
    bp.set_attribute("role_name", "av_td3:test-obstacle")
    yaw = math.degrees(env.route.yaw_at(15.0))
    obstacle = world.try_spawn_actor(bp, carla.Transform(carla.Location(x=float(x), y=float(y), z=z + 0.3),
                                                         carla.Rotation(yaw=yaw)))
    assert obstacle is not None
    try:
        saw_obstacle = False
        for _ in range(300):
            obs, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0], dtype=np.float32))
            saw_obstacle |= math.isfinite(info["obstacle_distance"])
            if terminated or truncated:
                break
        assert terminated and info["collision"] and not info["is_success"]
        assert saw_obstacle and info["reward_components"]["safety"] < 0
    finally:
        obstacle.destroy()


def test_no_actor_leaks_over_many_resets_and_close(make_env, client):
    before = counts(client)
    env = make_env(npc_vehicles=20)
    for seed in range(20):
        _, info = env.reset(seed=seed)
        vehicles, sensors = counts(client)
        assert vehicles == before[0] + 1 + info["npc_vehicles"]  # ego + this episode's NPCs only
        assert sensors == before[1] + 4  # camera, collision, lane invasion, obstacle
        env.step(np.zeros(2, dtype=np.float32))
    env.close()
    env.close()  # idempotent
    assert counts(client) == before and not our_actors(client)


def test_close_restores_the_world_settings(make_env, client):
    before = client.get_world().get_settings()
    env = make_env()
    assert client.get_world().get_settings().synchronous_mode
    env.close()
    after = client.get_world().get_settings()
    assert (after.synchronous_mode, after.fixed_delta_seconds) == (before.synchronous_mode,
                                                                   before.fixed_delta_seconds)


def test_eval_env_on_its_own_traffic_manager_beside_the_train_env(make_env, client):
    train = make_env(npc_vehicles=10, role="train")
    evaluation = make_env(npc_vehicles=10, role="eval")
    assert evaluation.ports.port == train.ports.port
    assert evaluation.ports.tm_port == train.ports.tm_port + 1
    train.reset(seed=0)
    for _ in range(5):
        train.step(np.array([0.0, 0.5], dtype=np.float32))
    _, info = evaluation.reset(seed=100)  # the train env steps aside: its NPCs go, its ego is parked
    ours = [a for a in our_actors(client) if a.type_id.startswith("vehicle.")]
    assert len(ours) == 2 + info["npc_vehicles"]  # both egos, the eval env's NPCs only
    for _ in range(5):
        _, _, terminated, _, info = evaluation.step(np.array([0.0, 0.5], dtype=np.float32))
        assert not info["collision"]  # not into the train env's car
    for _ in range(5):  # training resumes where it was
        _, _, terminated, _, info = train.step(np.array([0.0, 0.5], dtype=np.float32))
        assert info["dt"] == pytest.approx(0.05, abs=1e-3) and not info["collision"]
    assert train.reconnects == 0 and evaluation.reconnects == 0


def test_a_failed_tick_reconnects_and_raises_episode_lost(make_env):
    from av_td3.envs.carla.errors import CarlaEpisodeLost

    env = make_env(npc_vehicles=5)
    env.reset(seed=0)
    real = env._world

    class FailingWorld:  # the server "hangs" once: world.tick times out
        def __getattr__(self, name):
            return getattr(real, name)

        def tick(self, seconds=0.0):
            raise RuntimeError("time-out of 5000ms while waiting for the simulator")

    env._world = FailingWorld()
    with pytest.raises(CarlaEpisodeLost):
        env.step(np.zeros(2, dtype=np.float32))
    assert env.reconnects == 1
    env.reset(seed=1)
    _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert math.isfinite(info["speed"])

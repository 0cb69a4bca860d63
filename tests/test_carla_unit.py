"""The CARLA env's pure parts, without a server: route, geometry, control, images, frame matching,
ports, failure handling, and the clear errors for a missing server or wheel."""

import fnmatch
import math
import socket
import subprocess
import sys
import threading
import time
import types
from unittest import mock

import numpy as np
import pytest

from av_td3.config import CarlaEnvConfig, ConfigError, HighwayEnvConfig
from av_td3.envs.carla import share
from av_td3.envs.carla.client import import_carla, map_basename
from av_td3.envs.carla.errors import (CarlaConnectionError, CarlaEpisodeLost, CarlaError,
                                      CarlaNotInstalledError, SensorTimeout)
from av_td3.envs.carla.ports import resolve_ports
from av_td3.envs.carla.routes import DEFAULT_ROUTE, load_route
from av_td3.envs.carla.sensors import EventLog, FrameMatcher, bgra_to_gray, bgra_to_rgb, nearest_obstacle
from av_td3.envs.carla.traffic import choose_spawn_points
from av_td3.envs.carla.vehicle import EgoState, Tracker, measure, to_vehicle_control
from av_td3.envs.observation import observation_vector
from av_td3.envs.contract import N_WAYPOINTS, VECTOR_SIZE

try:  # the pure parts are tested everywhere; what needs the client wheel skips where it is missing
    import carla
except ImportError:
    carla = None
needs_carla = pytest.mark.skipif(carla is None, reason="the carla==0.9.16 client wheel is not installed")


@pytest.fixture(scope="module")
def route():
    return load_route()


def state(x, y, yaw, speed=0.0, elapsed=0.0, ax=0.0, ay=0.0):
    return EgoState(x, y, yaw, speed * math.cos(yaw), speed * math.sin(yaw), ax, ay, elapsed)


def measure_at(route, ego, prev, *, marking_geometry="outline", max_marking_overlap=None, **kw):
    """measure() with a 2.5 m lateral bound, a 3 m goal radius, a 0.05 s tick and a 3.5 m lane."""
    cfg = CarlaEnvConfig(max_lateral_deviation=2.5, goal_radius=3.0, fixed_delta_seconds=0.05,
                         marking_geometry=marking_geometry, max_marking_overlap=max_marking_overlap)
    assert cfg.reward.lane_width == 3.5
    args = dict(collision=False, lane_invasion=False, obstacle_distance=math.inf, obstacle_speed=0.0,
                half_size=(2.4, 1.0)) | kw
    return measure(route, ego, prev, cfg, **args)


# --- the route ------------------------------------------------------------------------------------------
def test_route_file_is_packaged_and_about_264_m(route):
    assert DEFAULT_ROUTE.name == "town01_route.csv" and DEFAULT_ROUTE.exists()
    assert route.length == pytest.approx(264.0, abs=10.0)
    assert route.target_speed is not None and route.target_speed.max() == pytest.approx(8.33)


def test_route_is_densified_into_one_array(route):
    assert len(route.xy) == len(route.s) == len(route.target_speed) > 500  # ~0.5 m apart, not ~30 rows
    assert np.diff(route.s).max() <= 0.5 + 1e-9 and np.all(np.diff(route.s) > 0)


def test_route_goes_west_then_turns_right_once_by_90_degrees(route):
    assert abs(math.cos(route.start_yaw()) + 1) < 1e-3  # heading -x: west on the map
    yaw = np.unwrap(route.seg_yaw)
    assert yaw[-1] - yaw[0] == pytest.approx(math.pi / 2, abs=math.radians(1))  # +90: a right turn
    turning = np.flatnonzero(np.abs(np.diff(yaw)) > 1e-4)
    turn_span = route.s[turning[-1]] - route.s[turning[0]]
    assert turn_span < 15.0  # one turn, not a drift spread over the route
    straight = route.s[turning[0]]
    assert straight > 200.0  # the long straight first


def test_projection_signed_lateral_and_heading_error_on_the_straight(route):
    p = route.project(np.array([250.0, 326.60 - 1.0]))  # heading west, right is -y
    assert p.lateral == pytest.approx(1.0, abs=1e-6)
    assert p.s == pytest.approx(320.0 - 250.0, abs=1e-6)
    q, _, _ = measure_at(route, state(250.0, 325.6, math.pi + 0.1), Tracker(70.0, 0.0, 0.0, 0.0))
    assert q.lateral_deviation == pytest.approx(1.0, abs=1e-6)
    assert q.heading_error == pytest.approx(0.1, abs=1e-9)  # pointing to the right of the route
    left = route.project(np.array([250.0, 326.60 + 0.5]))
    assert left.lateral == pytest.approx(-0.5, abs=1e-6)


@pytest.mark.parametrize("geometry", ["outline", "lane_frame"])
def test_measure_marking_overlap_from_the_ego_footprint(route, geometry):
    # 1 m right of the centre line, heading along it: the 2 m wide box reaches 2.0 m, 0.25 m past the
    # 3.5 m lane's edge; turned by 0.1 rad its corners reach further. A straight stretch: both
    # geometries place the box alike.
    def overlap(x, y, yaw):
        q, _, _ = measure_at(route, state(x, y, yaw), Tracker(70.0, 0.0, 0.0, 0.0), marking_geometry=geometry)
        return q.marking_overlap

    assert overlap(250.0, 325.6, math.pi) == pytest.approx(0.25, abs=1e-6)
    assert overlap(250.0, 325.6, math.pi + 0.1) == pytest.approx(1.0 + math.cos(0.1) + 2.4 * math.sin(0.1) - 1.75,
                                                                 abs=1e-6)
    assert overlap(250.0, 326.1, math.pi) == 0.0  # 0.5 m right: inside the lane


def test_projection_after_the_turn(route):
    gx, gy = route.goal
    p = route.project(np.array([gx + 1.0, gy + 10.0]))  # heading -y, right is +x
    assert p.lateral == pytest.approx(1.0, abs=1e-6)
    assert p.s == pytest.approx(route.length - 10.0, abs=1e-6)
    q, _, _ = measure_at(route, state(gx, gy + 10.0, -math.pi / 2 - 0.2), Tracker(p.s, 0, 0, 0))
    assert q.heading_error == pytest.approx(-0.2, abs=1e-9)


def test_waypoints_in_the_vehicle_frame_at_the_route_start(route):
    wps = route.waypoints_ahead(route.start, route.start_yaw(), 0.0)
    assert wps.shape == (N_WAYPOINTS, 2)
    np.testing.assert_allclose(wps[:, 0], 2.0 * np.arange(1, N_WAYPOINTS + 1), atol=1e-6)  # straight ahead
    np.testing.assert_allclose(wps[:, 1], 0.0, atol=1e-6)
    ego = state(*route.start, route.start_yaw())
    q, proj, _ = measure_at(route, ego, Tracker.start(route, ego))
    vec = observation_vector(CarlaEnvConfig(), route, q, proj, ego.position, ego.yaw, np.zeros(2))
    assert vec.shape == (VECTOR_SIZE,) and vec.dtype == np.float32
    assert vec[3] == pytest.approx(2.0 / 50) and vec[-2] == pytest.approx(50.0 / 50)


def test_waypoints_before_the_turn_bend_to_the_right(route):
    s = route.s[np.flatnonzero(np.abs(np.diff(np.unwrap(route.seg_yaw))) > 1e-4)[0]] - 10.0
    pos = route.point_at(s)
    wps = route.waypoints_ahead(pos, route.yaw_at(s), s)
    assert wps[-1, 1] > 20.0  # 50 m ahead lies well to the right (y right)


def test_bad_route_files_name_the_problem(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("x,y\n0,0\n1,0\n")
    with pytest.raises(ValueError, match="target_speed"):
        load_route(bad)
    bad.write_text("# comment\nx,y,target_speed\n0,0,5\n")
    with pytest.raises(ValueError, match="at least 2"):
        load_route(bad)


# --- per-step quantities ------------------------------------------------------------------------------
def test_measure_differences_progress_and_time_to_collision(route):
    yaw = route.start_yaw()
    prev = Tracker(s=0.0, speed=4.0, longitudinal_acceleration=0.0, elapsed=10.0)
    ego = state(route.start[0] - 0.25, route.start[1], yaw, speed=5.0, elapsed=10.05, ax=0.0, ay=2.0)
    q, _, nxt = measure_at(route, ego, prev, obstacle_distance=10.0, obstacle_speed=1.0, collision=True)
    assert q.speed == pytest.approx(5.0)
    assert q.dt == pytest.approx(0.05)
    assert q.longitudinal_acceleration == pytest.approx(20.0)  # (5 - 4) / 0.05
    assert q.longitudinal_jerk == pytest.approx(400.0)
    assert q.lateral_acceleration == pytest.approx(-2.0)  # +y is to the LEFT when heading west
    assert q.progress == pytest.approx(0.25) and q.distance_travelled == pytest.approx(0.25)
    assert q.time_to_collision == pytest.approx(10.0 / 4.0)
    assert q.collision and not q.off_road and not q.route_completed
    assert (nxt.s, nxt.speed, nxt.elapsed) == (pytest.approx(0.25), pytest.approx(5.0), 10.05)
    q2, _, _ = measure_at(route, state(*route.start, yaw), Tracker.start(route, state(*route.start, yaw)))
    assert q2.dt == pytest.approx(0.05) and math.isinf(q2.time_to_collision)  # fallback dt; not closing


def test_measure_off_road_and_goal(route):
    gx, gy = route.goal
    q, _, _ = measure_at(route, state(gx + 2.6, gy + 20, -math.pi / 2), Tracker(route.length - 25, 0, 0, 0))
    assert q.off_road and not q.route_completed
    q, _, _ = measure_at(route, state(gx, gy + 2.0, -math.pi / 2), Tracker(route.length - 3, 0, 0, 0))
    assert q.route_completed and q.distance_to_goal == pytest.approx(2.0, abs=1e-6)


def test_measure_ends_off_road_past_the_marking_overlap_bound(route):
    ego = state(250.0, 325.6, math.pi)  # on the straight, 1 m right of the centre line, heading along it
    prev = Tracker(70.0, 0.0, 0.0, 0.0)
    q, _, _ = measure_at(route, ego, prev)
    assert q.marking_overlap == pytest.approx(1.0 + 1.0 - 1.75, abs=1e-3) and not q.off_road  # no bound: on road
    assert measure_at(route, ego, prev, max_marking_overlap=0.2)[0].off_road
    assert not measure_at(route, ego, prev, max_marking_overlap=0.3)[0].off_road


# --- control and images -----------------------------------------------------------------------------
@needs_carla
def test_control_mapping_to_a_real_vehicle_control():
    c = to_vehicle_control(np.array([0.3, 0.5]))
    assert isinstance(c, carla.VehicleControl)
    assert (c.steer, c.throttle, c.brake) == (pytest.approx(0.3), pytest.approx(0.5), 0.0)
    c = to_vehicle_control(np.array([-1.7, -0.25]))
    assert (c.steer, c.throttle, c.brake) == (-1.0, 0.0, pytest.approx(0.25))
    assert not c.hand_brake and not c.reverse


def test_bgra_camera_buffer_to_grayscale_uses_the_right_channels():
    h, w = 144, 256
    bgra = np.zeros((h, w, 4), dtype=np.uint8)
    bgra[..., 3] = 255
    bgra[:, : w // 2, 2] = 255  # left half pure red (BGRA: R is byte 2)
    bgra[:, w // 2:, 0] = 255  # right half pure blue
    raw = bgra.tobytes()  # what carla.Image.raw_data holds
    gray = bgra_to_gray(raw, w, h, 84, 84)
    assert gray.shape == (84, 84) and gray.dtype == np.uint8
    assert gray[:, 0].tolist() == [round(0.299 * 255)] * 84
    assert gray[:, -1].tolist() == [round(0.114 * 255)] * 84
    rgb = bgra_to_rgb(raw, w, h)
    assert rgb.shape == (h, w, 3) and tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, -1]) == (0, 0, 255)


# --- frame matching -----------------------------------------------------------------------------------
def test_frame_matcher_returns_the_ticked_frame_and_drops_stale_ones():
    m = FrameMatcher()
    for f in (1, 2, 3):
        m.put(f, f"image{f}")
    assert m.wait(3, timeout=0.1) == "image3"
    assert len(m) == 0  # 1 and 2 were discarded, never returned


def test_frame_matcher_waits_for_a_frame_delivered_later():
    m = FrameMatcher()
    m.put(4, "old")

    def deliver():
        time.sleep(0.05)
        m.put(5, "new")

    threading.Thread(target=deliver).start()
    assert m.wait(5, timeout=2.0) == "new"


def test_frame_matcher_timeout_and_skip_name_the_frame():
    m = FrameMatcher("camera")
    t0 = time.monotonic()
    with pytest.raises(SensorTimeout, match="camera data for frame 7 within 0.1 s"):
        m.wait(7, timeout=0.1)
    assert time.monotonic() - t0 < 1.0
    m.put(9, "later")
    with pytest.raises(SensorTimeout, match="frame 8 was skipped"):
        m.wait(8, timeout=5.0)


def test_frame_matcher_is_bounded():
    m = FrameMatcher(maxlen=8)
    for f in range(100):  # another env ticking the world for a whole eval phase
        m.put(f, f)
    assert len(m) == 8 and m.wait(99, timeout=0.1) == 99


def test_event_log_takes_up_to_a_frame_and_keeps_later_events():
    log = EventLog()
    for f in (3, 5, 6):
        log.put(f, f)
    assert [f for f, _ in log.take(5)] == [3, 5]
    assert [f for f, _ in log.take(10)] == [6]
    dist, other = nearest_obstacle([(4, (3.0, "a")), (5, (8.0, "b")), (5, (6.0, "c"))], frame=5)
    assert (dist, other) == (6.0, "c")  # frame 4's closer detection is the past
    assert nearest_obstacle([], 5) == (math.inf, None)


# --- ports --------------------------------------------------------------------------------------------
def test_ports_per_job_and_role():
    p = resolve_ports("127.0.0.1", 2000, 8000, 10, job_num=0, role="train", environ={})
    assert (p.host, p.port, p.streaming_port, p.tm_port) == ("127.0.0.1", 2000, 2001, 8000)
    e = resolve_ports("127.0.0.1", 2000, 8000, 10, job_num=0, role="eval", environ={})
    assert (e.port, e.tm_port) == (2000, 8001)  # same server, its own Traffic Manager
    j = resolve_ports("127.0.0.1", 2000, 8000, 10, job_num=3, role="eval", environ={})
    assert (j.port, j.tm_port) == (2030, 8031)
    one = resolve_ports("127.0.0.1", 2000, 8000, 0, job_num=3, role="train", environ={})
    assert (one.port, one.tm_port) == (2000, 8000)  # stride 0: every job on one server
    tm = {resolve_ports("h", 2000, 8000, 10, k, r, {}).tm_port for k in range(20) for r in ("train", "eval")}
    assert len(tm) == 40  # no two envs of a 20-job sweep share a Traffic Manager


def test_env_vars_override_host_and_base_port():
    env = {"CARLA_HOST": "10.1.2.3", "CARLA_PORT": "3000"}
    p = resolve_ports("127.0.0.1", 2000, 8000, 10, job_num=1, role="train", environ=env)
    assert (p.host, p.port, p.tm_port) == ("10.1.2.3", 3010, 8010)
    with pytest.raises(ValueError, match="CARLA_PORT"):
        resolve_ports("h", 2000, 8000, 10, environ={"CARLA_PORT": "two thousand"})
    with pytest.raises(ValueError, match="role"):
        resolve_ports("h", 2000, 8000, 10, role="test", environ={})
    with pytest.raises(ValueError, match="out of range"):
        resolve_ports("h", 65000, 8000, 100, job_num=10, environ={})


def test_port_stride_must_keep_servers_apart():
    CarlaEnvConfig(port_stride=0)
    CarlaEnvConfig(port_stride=3)
    with pytest.raises(ConfigError, match="env.port_stride"):
        CarlaEnvConfig(port_stride=2)
    with pytest.raises(ConfigError, match="env.camera_fov"):
        CarlaEnvConfig(camera_fov=0.0)


# --- traffic and server sharing ---------------------------------------------------------------------------
def test_spawn_point_choice_keeps_its_distance_and_its_seed():
    pts = np.stack([np.arange(0, 200, 5.0), np.zeros(40)], 1)
    chosen = choose_spawn_points(pts, np.array([0.0, 0.0]), 20, 20.0, np.random.default_rng(1))
    assert len(chosen) == len(set(chosen)) == 20
    assert all(np.linalg.norm(pts[i]) >= 20.0 for i in chosen)
    assert chosen == choose_spawn_points(pts, np.array([0.0, 0.0]), 20, 20.0, np.random.default_rng(1))
    assert len(choose_spawn_points(pts, np.array([0.0, 0.0]), 100, 20.0, np.random.default_rng(1))) == 36


def test_server_share_keeps_first_settings_and_suspends_the_other_env():
    class E:
        pass

    train, ev = E(), E()
    key = ("test-host", 1)
    s = share.join(key, train, "async-settings")
    assert share.join(key, ev, "sync-settings") is s and s.original_settings == "async-settings"
    assert share.activate(s, train) is None
    assert share.activate(s, ev) is train  # the trainer's env must step aside
    assert share.activate(s, ev) is None
    assert not share.leave(s, train)
    assert share.leave(s, ev)  # the last one restores the settings


# --- errors ---------------------------------------------------------------------------------------------
def test_error_hierarchy_and_import_without_the_wheel():
    assert issubclass(CarlaConnectionError, CarlaError) and issubclass(CarlaConnectionError, ConnectionError)
    assert issubclass(CarlaEpisodeLost, CarlaError) and not issubclass(CarlaEpisodeLost, RuntimeError)
    assert issubclass(CarlaNotInstalledError, ImportError)
    code = ("import sys; sys.modules['carla'] = None; import av_td3.envs.carla as c; "
            "from av_td3.envs.carla.client import import_carla\n"
            "try:\n    import_carla()\nexcept c.CarlaNotInstalledError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install carla==0.9.16" in out.stdout and "x86_64" in out.stdout and "3.10-3.12" in out.stdout


def test_map_basename():
    assert map_basename("Carla/Maps/Town01") == "Town01" and map_basename("Town01") == "Town01"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@needs_carla
def test_no_server_raises_a_clear_error_within_the_timeout(monkeypatch):
    from av_td3.envs.carla.env import CarlaDrivingEnv

    monkeypatch.delenv("CARLA_HOST", raising=False)
    monkeypatch.delenv("CARLA_PORT", raising=False)
    port = closed_port()
    cfg = CarlaEnvConfig(host="127.0.0.1", port=port, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(CarlaConnectionError) as err:
        CarlaDrivingEnv(cfg, npc_vehicles=20)
    assert time.monotonic() - t0 < cfg.timeout + 2.0
    msg = str(err.value)
    assert f"no CARLA server at 127.0.0.1:{port}" in msg and "timed out after 1.0 s" in msg
    assert "carlasim/carla:0.9.16" in msg and f"-carla-rpc-port={port}" in msg


@needs_carla
def test_carla_check_exits_2_with_the_message(monkeypatch, capsys):
    from av_td3.cli import main

    monkeypatch.delenv("CARLA_HOST", raising=False)
    monkeypatch.delenv("CARLA_PORT", raising=False)
    port = closed_port()
    assert main(["carla-check", "--port", str(port), "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert f"no CARLA server at 127.0.0.1:{port}" in err and "Traceback" not in err


# --- failure handling, with the simulator faked ------------------------------------------------------
@pytest.fixture
def offline_env(monkeypatch):
    """A CarlaDrivingEnv whose connection is faked: the recovery logic runs, nothing talks to CARLA."""
    from av_td3.envs.carla import connection as connection_mod
    from av_td3.envs.carla import env as env_mod

    monkeypatch.setattr(env_mod.CarlaDrivingEnv, "_connect", lambda self: None)
    monkeypatch.setattr(env_mod.CarlaDrivingEnv, "_sweep_tagged", lambda self: None)
    monkeypatch.setattr(connection_mod.time, "sleep", lambda s: None)
    monkeypatch.delenv("CARLA_PORT", raising=False)
    e = env_mod.CarlaDrivingEnv(CarlaEnvConfig(max_reconnects=2, reconnect_delay=0.0), npc_vehicles=0)
    e._ego = object()  # as if reset() had run
    monkeypatch.setattr(e, "_activate", lambda resume: None)
    yield e
    e.close()


@needs_carla
def test_a_lost_tick_reconnects_rebuilds_and_raises_episode_lost(offline_env, caplog):
    calls = []
    offline_env._advance = lambda a: (_ for _ in ()).throw(RuntimeError("time-out of 5000ms while waiting"))
    offline_env._reconnect = lambda: calls.append("reconnect")
    offline_env._build_episode = lambda seed: calls.append("rebuild")
    with pytest.raises(CarlaEpisodeLost, match="call reset"):
        offline_env.step(np.zeros(2))
    assert calls == ["reconnect", "rebuild"] and offline_env.reconnects == 1
    assert "reconnect 1 of 2" in caplog.text


@needs_carla
def test_consecutive_failures_beyond_the_limit_raise_connection_error(offline_env):
    offline_env._advance = lambda a: (_ for _ in ()).throw(RuntimeError("time-out"))

    def no_server():
        raise CarlaConnectionError("no CARLA server at 127.0.0.1:2000")

    offline_env._reconnect = no_server
    with pytest.raises(CarlaConnectionError, match="2 reconnects in a row failed") as err:
        offline_env.step(np.zeros(2))
    assert offline_env.reconnects == 2 and "127.0.0.1:2000" in str(err.value)


@needs_carla
def test_programming_errors_are_not_mistaken_for_a_lost_server(offline_env):
    offline_env._advance = lambda a: (_ for _ in ()).throw(NotImplementedError("bug"))
    with pytest.raises(NotImplementedError):
        offline_env.step(np.zeros(2))
    assert offline_env.reconnects == 0


@needs_carla
def test_import_carla_returns_the_module():
    assert import_carla() is carla


# --- the whole env against a fake simulator -------------------------------------------------------------
# A small stand-in for a CARLA server (kinematic ego, parked NPCs, a camera that sends every tick), so
# reset / step / suspend / recovery / clean-up run end to end here. It checks the env's bookkeeping and
# conventions, not CARLA's behaviour: the integration tests do that against a real server.
class FakeServer:
    def __init__(self, route):
        self.route, self.actors, self.next_id, self.frame = route, {}, 100, 0
        self.settings = carla.WorldSettings()  # asynchronous, as a fresh server starts
        self.down = False
        self.fail_ticks = 0  # the next N ticks time out
        self.applied_with_timeout = []  # the client timeout at each apply_settings
        self.tm_error = None  # get_trafficmanager raises RuntimeError(this)

    def spawn(self, bp, transform, parent=None):
        for a in self.actors.values():  # spawning onto another vehicle fails, as in CARLA
            if a.type_id.startswith("vehicle.") and bp.id.startswith("vehicle.") and parent is None \
                    and a.location().distance(transform.location) < 2.0:
                return None
        self.next_id += 1
        actor = FakeActor(self, self.next_id, bp, transform, parent)
        self.actors[actor.id] = actor
        return actor

    def tick(self):
        if self.down or self.fail_ticks:
            self.fail_ticks = max(self.fail_ticks - 1, 0)
            raise RuntimeError("time-out of 5000ms while waiting for the simulator")
        self.frame += 1
        dt = self.settings.fixed_delta_seconds
        for a in list(self.actors.values()):
            a.physics(dt)
        for a in list(self.actors.values()):
            a.sense(self.frame)
        return self.frame


class FakeActor:
    def __init__(self, server, actor_id, bp, transform, parent):
        self.server, self.id, self.type_id, self.parent = server, actor_id, bp.id, parent
        self.attributes = dict(bp.attrs)
        self.transform = carla.Transform(transform.location, transform.rotation)
        self.speed, self.control, self.physics_on, self.callback = 0.0, carla.VehicleControl(), True, None
        self.bounding_box = carla.BoundingBox(carla.Location(), carla.Vector3D(2.4, 1.0, 0.8))

    def location(self):
        return self.transform.location

    def physics(self, dt):
        if not self.type_id.startswith("vehicle.") or not self.physics_on or self.attributes.get(
                "role_name", "").endswith("npc"):
            return
        c = self.control
        self.speed = max(self.speed + (4.0 * c.throttle - 8.0 * c.brake) * dt, 0.0)
        yaw = math.radians(self.transform.rotation.yaw)
        yaw += self.speed / 2.9 * math.tan(c.steer * math.radians(70)) * dt  # + steer turns right
        loc = self.transform.location
        self.transform = carla.Transform(
            carla.Location(x=loc.x + self.speed * math.cos(yaw) * dt, y=loc.y + self.speed * math.sin(yaw) * dt,
                           z=loc.z), carla.Rotation(yaw=math.degrees(yaw)))

    def sense(self, frame):
        if self.callback is None:
            return
        ev = types.SimpleNamespace(frame=frame)
        if self.type_id == "sensor.camera.rgb":
            w, h = int(self.attributes["image_size_x"]), int(self.attributes["image_size_y"])
            self.callback(types.SimpleNamespace(frame=frame, width=w, height=h,
                                                raw_data=np.full((h, w, 4), frame % 256, np.uint8).tobytes()))
        elif self.type_id == "sensor.other.collision":
            for other in self.server.actors.values():
                if other is not self.parent and other.type_id.startswith("vehicle.") and \
                        other.location().distance(self.parent.location()) < 3.0:
                    self.callback(types.SimpleNamespace(frame=frame, other_actor=other))

    # the carla.Actor / carla.Sensor / carla.Vehicle surface the env uses
    def get_transform(self):
        return self.transform

    def get_velocity(self):
        yaw = math.radians(self.transform.rotation.yaw)
        return carla.Vector3D(self.speed * math.cos(yaw), self.speed * math.sin(yaw), 0.0)

    def get_acceleration(self):
        return carla.Vector3D(0.0, 0.0, 0.0)

    def get_angular_velocity(self):
        return carla.Vector3D(0.0, 0.0, 0.0)

    def apply_control(self, control):
        self.control = control

    def set_simulate_physics(self, on):
        self.physics_on = on

    def set_transform(self, t):
        self.transform = carla.Transform(t.location, t.rotation)

    def set_target_velocity(self, v):
        self.speed = math.hypot(v.x, v.y)

    def set_target_angular_velocity(self, w):
        pass

    def listen(self, callback):
        self.callback = callback

    def stop(self):
        self.callback = None


class FakeBlueprint:
    def __init__(self, bp_id, **attrs):
        self.id, self.attrs = bp_id, {"role_name": "", **attrs}

    def has_attribute(self, name):
        return name in self.attrs

    def get_attribute(self, name):
        return types.SimpleNamespace(recommended_values=["0,0,0", "255,0,0"], __int__=None) \
            if name == "color" else int(self.attrs[name])

    def set_attribute(self, name, value):
        self.attrs[name] = str(value)


class FakeActorList(list):
    def filter(self, pattern):
        return [a for a in self if fnmatch.fnmatch(a.type_id, pattern)]


class FakeWorld:
    def __init__(self, server):
        self.server, self.id = server, 1

    def get_settings(self):
        s, out = self.server.settings, carla.WorldSettings()
        out.synchronous_mode, out.fixed_delta_seconds = s.synchronous_mode, s.fixed_delta_seconds
        return out

    def apply_settings(self, settings):
        self.server.settings = settings
        self.server.applied_with_timeout.append(getattr(self.server, "timeout", None))

    def get_map(self):
        route = self.server.route

        def get_waypoint(loc, project_to_road=True, lane_type=None):
            p = route.project(np.array([loc.x, loc.y]))
            x, y = route.point_at(p.s)
            return types.SimpleNamespace(is_junction=False, transform=carla.Transform(
                carla.Location(x=float(x), y=float(y), z=0.0), carla.Rotation(yaw=math.degrees(p.route_yaw))))

        points = [carla.Transform(carla.Location(x=20.0 + 8.0 * i, y=2.0, z=0.3), carla.Rotation())
                  for i in range(45)]
        return types.SimpleNamespace(name="Carla/Maps/Town01", get_waypoint=get_waypoint,
                                     get_spawn_points=lambda: points)

    def get_blueprint_library(self):
        bps = [FakeBlueprint("vehicle.tesla.model3", number_of_wheels=4, color="0,0,0"),
               FakeBlueprint("vehicle.audi.tt", number_of_wheels=4),
               FakeBlueprint("vehicle.yamaha.yzf", number_of_wheels=2),
               FakeBlueprint("sensor.camera.rgb", image_size_x=800, image_size_y=600, fov=90),
               FakeBlueprint("sensor.other.collision"), FakeBlueprint("sensor.other.lane_invasion"),
               FakeBlueprint("sensor.other.obstacle", distance=5, only_dynamics="False")]
        return types.SimpleNamespace(find=lambda i: next(b for b in bps if b.id == i),
                                     filter=lambda p: [b for b in bps if fnmatch.fnmatch(b.id, p)])

    def try_spawn_actor(self, bp, transform):
        return self.server.spawn(bp, transform)

    def spawn_actor(self, bp, transform, attach_to=None):
        return self.server.spawn(bp, transform, parent=attach_to)

    def tick(self, seconds=0.0):
        return self.server.tick()

    def get_snapshot(self):
        server = self.server
        return types.SimpleNamespace(
            frame=server.frame, find=server.actors.get,
            timestamp=types.SimpleNamespace(elapsed_seconds=server.frame * server.settings.fixed_delta_seconds))

    def get_actors(self):
        return FakeActorList(self.server.actors.values())


class FakeCommand:
    FutureActor = object()

    class SpawnActor:
        def __init__(self, bp, transform):
            self.bp, self.transform, self.autopilot = FakeBlueprint(bp.id, **bp.attrs), transform, None

        def then(self, command):
            self.autopilot = command
            return self

    class SetAutopilot:
        def __init__(self, actor, on, port):
            self.port = port

    class DestroyActor:
        def __init__(self, actor_id):
            self.actor_id = actor_id


class FakeClient:
    def __init__(self, server):
        self.server, self.world, self.tms = server, FakeWorld(server), []

    def set_timeout(self, seconds):
        self.server.timeout = seconds

    def get_world(self):
        return self.world

    def load_world(self, name):
        raise AssertionError("the fake server already runs Town01")

    def get_trafficmanager(self, port):
        if self.server.tm_error:
            raise RuntimeError(self.server.tm_error)
        tm = mock.Mock(port=port)
        self.tms.append(tm)
        return tm

    def apply_batch_sync(self, commands, tick=False):
        out = []
        for c in commands:
            if isinstance(c, FakeCommand.DestroyActor):
                gone = self.server.actors.pop(c.actor_id, None)
                out.append(types.SimpleNamespace(error="" if gone else "Actor not found", actor_id=c.actor_id))
            else:
                a = self.server.spawn(c.bp, c.transform)
                out.append(types.SimpleNamespace(error="" if a else "Spawn failed because of collision",
                                                 actor_id=a.id if a else 0))
        if tick:
            self.server.tick()
        return out


@pytest.fixture
def fake_server(monkeypatch, route):
    from av_td3.envs.carla import connection as connection_mod
    from av_td3.envs.carla import env as env_mod

    server = FakeServer(route)
    fake_carla = types.SimpleNamespace(Location=carla.Location, Transform=carla.Transform,
                                       Rotation=carla.Rotation, VehicleControl=carla.VehicleControl,
                                       LaneType=carla.LaneType, command=FakeCommand)
    monkeypatch.setattr(env_mod, "import_carla", lambda: fake_carla)

    def fake_connect(host, port, timeout):
        if server.down:
            raise CarlaConnectionError(f"no CARLA server at {host}:{port}")
        return FakeClient(server)

    monkeypatch.setattr(env_mod, "connect", fake_connect)
    monkeypatch.setattr(connection_mod, "connect", fake_connect)
    monkeypatch.setattr(connection_mod.time, "sleep", lambda s: None)
    monkeypatch.delenv("CARLA_PORT", raising=False)
    return server


def fake_env(npc=10, role="train", **cfg):
    from av_td3.envs.carla.env import CarlaDrivingEnv

    return CarlaDrivingEnv(CarlaEnvConfig(reconnect_delay=0.0, **cfg), npc_vehicles=npc, role=role)


def follow_route(obs) -> np.ndarray:
    """Steer towards the waypoint 6 m ahead (x forward, y right), hold ~7 m/s."""
    wx, wy = obs["vector"][3 + 2 * 2: 3 + 2 * 2 + 2] * 50.0
    speed = obs["vector"][0] * 30.0
    return np.array([np.clip(2.0 * math.atan2(wy, wx), -1, 1), np.clip(0.5 * (7.0 - speed), -1, 1)],
                    dtype=np.float32)


@needs_carla
def test_a_full_episode_on_the_fake_simulator_reaches_the_goal(fake_server):
    env = fake_env(npc=10)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["npc_vehicles"] == 10
    assert fake_server.settings.synchronous_mode and fake_server.settings.fixed_delta_seconds == 0.05
    assert obs["image"][:-1].max() == 0 and obs["image"][-1].max() > 0
    ret, lateral = 0.0, []
    for t in range(1000):
        obs, reward, terminated, truncated, info = env.step(follow_route(obs))
        ret += reward
        lateral.append(abs(info["lateral_deviation"]))
        assert set(info["reward_components"]) == {"efficiency", "lane_keeping", "comfort", "safety",
                                                  "progress"}
        if terminated or truncated:
            break
    assert terminated and info["is_success"] and info["route_completed"] and not info["collision"]
    assert max(lateral) < 2.0  # signs agree: steering towards y-right waypoints keeps to the route
    assert 30 < t * 0.05 < 60 and info["dt"] == pytest.approx(0.05)
    env.close()
    assert not fake_server.actors and not fake_server.settings.synchronous_mode


@needs_carla
def test_fake_episodes_leak_no_actors_and_truncate(fake_server):
    env = fake_env(npc=20, max_episode_steps=5)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert len(fake_server.actors) == 1 + 4 + info["npc_vehicles"]
        for t in range(5):
            _, _, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert truncated and not terminated
    env.close()
    env.close()
    assert not fake_server.actors
    with pytest.raises(CarlaError, match="closed"):
        env.reset()


@needs_carla
def test_a_collision_terminates_the_episode(fake_server, route):
    env = fake_env(npc=0)
    env.reset(seed=0)
    x, y = route.point_at(12.0)
    fake_server.spawn(FakeBlueprint("vehicle.audi.tt"), carla.Transform(carla.Location(x=x, y=y)))
    for _ in range(200):
        _, _, terminated, _, info = env.step(np.array([0.0, 1.0], np.float32))
        if terminated:
            break
    assert terminated and info["collision"] and not info["is_success"]
    env.close()


@needs_carla
def test_train_and_eval_envs_take_turns_on_one_server(fake_server):
    train, evaluation = fake_env(npc=10, role="train"), fake_env(npc=10, role="eval")
    assert evaluation.ports.tm_port == train.ports.tm_port + 1
    train.reset(seed=0)
    for _ in range(20):
        train.step(np.array([0.0, 0.5], np.float32))
    parked_at = train._ego.get_transform().location
    evaluation.reset(seed=1)  # the train env's NPCs go, its ego is parked above the road
    tags = [a.attributes["role_name"] for a in fake_server.actors.values()]
    assert sum(t.endswith(":npc") and t.startswith(f"av_td3:{train.ports.tm_port}:") for t in tags) == 0
    assert train._ego.get_transform().location.z > 100
    for _ in range(10):
        evaluation.step(np.array([0.0, 0.5], np.float32))
    _, _, _, _, info = train.step(np.array([0.0, 0.5], np.float32))  # resumes where it was
    assert train._ego.get_transform().location.distance(parked_at) < 1.0
    assert info["dt"] == pytest.approx(0.05) and not info["collision"]
    assert sum(a.attributes["role_name"] == f"av_td3:{train.ports.tm_port}:npc"
               for a in fake_server.actors.values()) == 10
    train.close()
    assert fake_server.settings.synchronous_mode  # the eval env still drives
    evaluation.close()
    assert not fake_server.actors and not fake_server.settings.synchronous_mode


@needs_carla
def test_a_timed_out_tick_reconnects_and_the_next_reset_works(fake_server, caplog):
    env = fake_env(npc=5, max_reconnects=3)
    env.reset(seed=0)
    fake_server.fail_ticks = 1
    with pytest.raises(CarlaEpisodeLost):
        env.step(np.zeros(2, np.float32))
    assert env.reconnects == 1 and "reconnect 1 of 3" in caplog.text
    assert len(fake_server.actors) == 1 + 4 + 5  # the broken episode's actors are gone, a new one stands
    env.reset(seed=1)
    env.step(np.zeros(2, np.float32))
    fake_server.down = True
    with pytest.raises(CarlaConnectionError, match="3 reconnects in a row failed"):
        env.step(np.zeros(2, np.float32))
    assert env.reconnects == 4
    fake_server.down = False  # the server is back: a new reset starts over
    env.reset(seed=2)
    assert env.reconnects == 5 and len(fake_server.actors) == 1 + 4 + 5
    env.close()
    assert not fake_server.actors


@needs_carla
def test_close_after_giving_up_still_removes_the_actors_of_a_server_that_came_back(fake_server):
    env = fake_env(npc=3, max_reconnects=1)
    env.reset(seed=0)
    fake_server.down = True
    with pytest.raises(CarlaConnectionError):
        env.step(np.zeros(2, np.float32))
    fake_server.down = False
    env.close()
    assert not fake_server.actors and not fake_server.settings.synchronous_mode


def test_the_idle_env_stops_its_sensors_and_listens_again_when_it_drives(fake_server):
    train, evaluation = fake_env(npc=2, role="train"), fake_env(npc=2, role="eval")
    train.reset(seed=0)
    train.step(np.array([0.0, 0.5], np.float32))
    assert all(s.callback is not None for s in train._sensors)
    evaluation.reset(seed=1)  # the train env is suspended
    assert train._sensors and all(s.callback is None for s in train._sensors)
    assert all(s.callback is not None for s in evaluation._sensors)
    train.step(np.array([0.0, 0.5], np.float32))  # resumed: its sensors stream again, the eval env's stop
    assert all(s.callback is not None for s in train._sensors)
    assert all(s.callback is None for s in evaluation._sensors)
    train.close()
    evaluation.close()


def test_settings_found_synchronous_are_left_asynchronous_at_close(fake_server, caplog):
    fake_server.settings.synchronous_mode = True  # a crashed run's leftover: nobody ticks this world
    fake_server.settings.fixed_delta_seconds = 0.05
    env = fake_env(npc=0)
    env.reset(seed=0)
    env.close()
    assert not fake_server.settings.synchronous_mode
    assert "synchronous mode when this run connected" in caplog.text


def test_the_long_map_load_timeout_holds_until_the_settings_are_applied(fake_server):
    from av_td3.envs.carla.connection import MAP_LOAD_TIMEOUT

    env = fake_env(npc=0, timeout=5.0)
    assert fake_server.applied_with_timeout == [MAP_LOAD_TIMEOUT]  # apply_settings ticks in 0.9.16
    assert fake_server.timeout == 5.0  # then back to env.timeout
    env.close()


def test_a_busy_traffic_manager_port_names_the_settings(fake_server):
    fake_server.tm_error = "trying to create rpc server for traffic manager; but the system failed to " \
                           "create because of bind error."
    with pytest.raises(CarlaError, match=r"port 8000 is in use.*env.traffic_manager_port.*env.port_stride"):
        fake_env(npc=0)


def test_a_tick_longer_than_carla_can_substep_is_rejected():
    CarlaEnvConfig(fixed_delta_seconds=0.1)
    with pytest.raises(ConfigError, match=r"env.fixed_delta_seconds.*<= 0.1 s"):
        CarlaEnvConfig(fixed_delta_seconds=0.2)


def test_carla_check_names_a_missing_blueprint():
    from av_td3.carla_check import _spawn_one

    def find(name):
        raise IndexError("blueprint not found")  # 0.9.16's BlueprintLibrary.find

    world = types.SimpleNamespace(get_blueprint_library=lambda: types.SimpleNamespace(find=find))
    with pytest.raises(RuntimeError, match="no vehicle.tesla.model3 blueprint"):
        _spawn_one(carla, world)


def test_carla_errors_are_the_trainers_generic_ones():
    from av_td3.envs.errors import EnvFailed, EpisodeLost

    assert issubclass(CarlaEpisodeLost, EpisodeLost) and issubclass(CarlaConnectionError, EnvFailed)
    assert CarlaEnvConfig().worker and not HighwayEnvConfig().worker  # CARLA's client lives in a worker


def test_only_the_driving_envs_traffic_manager_is_synchronous(fake_server):
    train, evaluation = fake_env(npc=2, role="train"), fake_env(npc=2, role="eval")
    train.reset(seed=0)
    evaluation.reset(seed=1)
    assert train._tm.set_synchronous_mode.call_args.args == (False,)  # parked, its TM idle
    assert evaluation._tm.set_synchronous_mode.call_args.args == (True,)
    train.step(np.array([0.0, 0.5], np.float32))
    assert train._tm.set_synchronous_mode.call_args.args == (True,)
    assert evaluation._tm.set_synchronous_mode.call_args.args == (False,)
    evaluation.reset(seed=2)  # a reset after a suspend makes its TM synchronous again too
    assert evaluation._tm.set_synchronous_mode.call_args.args == (True,)
    train.suspend()  # what the worker supervisor calls across processes (envs/worker.py Turns)
    assert train._parked is not None and train._tm.set_synchronous_mode.call_args.args == (False,)
    train.close()
    evaluation.close()


@needs_carla
def test_carla_without_a_camera_and_with_the_minimal_vector(fake_server):
    env = fake_env(npc=0, camera="none", vector="minimal", camera_pitch=-5.0)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"vector"} and obs["vector"].shape == (8,) and env.observation_space.contains(obs)
    assert not any(a.type_id == "sensor.camera.rgb" for a in fake_server.actors.values())  # no camera spawned
    obs, *_ = env.step(np.array([0.2, 0.5], dtype=np.float32))
    np.testing.assert_allclose(obs["vector"][2:4], [0.2, 0.5])  # the previous action
    assert list(obs["vector"][4:7]) == [1, 0, 0]  # the Town01 route's turn is far ahead: follow the lane
    env.close()

"""Routes from files: the packaged route set, its splits, the embedded road built along any route file,
route commands, and one-line errors for bad files."""

import math

import numpy as np
import pytest

from av_td3.config import ConfigError, HighwayEnvConfig
from av_td3.envs.carla.routes import DEFAULT_ROUTE, load_route
from av_td3.envs.highway import HighwayDrivingEnv, build_road
from av_td3.envs.roads import fit_pieces
from av_td3.envs.route import Route
from av_td3.envs.route_file import ROUTES_DIR, RouteFileError, read_points, route_names
from av_td3.envs.routes import ROUTES, route_points, write_all


def heading_change(route):
    return float(np.unwrap(route.seg_yaw)[-1] - route.seg_yaw[0])


def test_the_packaged_routes_are_the_generator_s_output(tmp_path):
    for path in write_all(tmp_path):
        assert path.read_text() == (ROUTES_DIR / path.name).read_text(), path.name


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_packaged_route_builds_a_road_of_its_pieces(name):
    _, pieces = ROUTES[name]
    network, route = build_road(HighwayEnvConfig(), route_file=name)
    length = sum(p[1] if p[0] == "S" else p[1] * math.radians(p[2]) for p in pieces)
    assert 200 <= length <= 600
    assert route.length == pytest.approx(length, abs=0.5)
    fitted = fit_pieces(read_points(name)[0])
    assert len(fitted) == len(pieces)  # each straight and arc of the file is one lane section
    for want, got in zip(pieces, fitted):
        if want[0] == "S":
            assert got.centre is None
        else:
            assert got.radius == pytest.approx(want[1], rel=1e-3)
            assert (got.phi1 > got.phi0) == (want[0] == "R")  # a right turn: the phase grows
    assert len(network.lanes_list()) == 2 * len(pieces)
    turned = sum((1 if p[0] == "R" else -1) * math.radians(p[2]) for p in pieces if p[0] != "S")
    assert heading_change(route) == pytest.approx(turned, abs=1e-3)


def test_the_route_set_has_the_turns_a_town_has():
    arcs = [(p[0], p[1], p[2]) for _, pieces in ROUTES.values() for p in pieces if p[0] != "S"]
    assert {kind for kind, _, _ in arcs} == {"L", "R"}
    radii = [r for _, r, _ in arcs]
    assert min(radii) <= 9 and max(radii) >= 100 and all(7 <= r <= 100 for r in radii)
    s_bends = [n for n, (_, p) in ROUTES.items() if len({q[0] for q in p if q[0] != "S"}) == 2]
    assert len(s_bends) >= 3 and len(ROUTES) >= 8


def test_train_and_test_splits_name_packaged_routes_and_share_none():
    splits = HighwayEnvConfig().route_splits
    assert set(splits["train"]) | set(splits["test"]) <= set(ROUTES)
    assert not set(splits["train"]) & set(splits["test"])
    assert route_names(HighwayEnvConfig(routes="train", eval_routes="test"), "train") == splits["train"]
    assert route_names(HighwayEnvConfig(routes="train", eval_routes="test"), "eval") == splits["test"]
    assert route_names(HighwayEnvConfig(), "eval") == [""]  # the built-in road


def test_the_embedded_road_from_town01_has_the_carla_route_s_length_and_turn():
    carla = load_route()
    _, embedded = build_road(HighwayEnvConfig(), route_file=str(DEFAULT_ROUTE))
    assert embedded.length == pytest.approx(carla.length, abs=0.1)
    assert heading_change(embedded) == pytest.approx(heading_change(carla), abs=1e-3)
    assert heading_change(embedded) == pytest.approx(math.pi / 2, abs=0.01)  # one right turn
    (start, end, sign), = embedded.turns()
    (c_start, c_end, c_sign), = carla.turns()
    assert sign == c_sign == 1 and start == pytest.approx(c_start, abs=0.5) and end == pytest.approx(c_end, abs=0.5)
    arc = [p for p in fit_pieces(read_points(DEFAULT_ROUTE)[0]) if p.centre is not None]
    assert len(arc) == 1 and arc[0].radius == pytest.approx(6.8, abs=0.05)  # Town01's junction turn


def test_route_commands_announce_the_next_turn_within_the_distance():
    _, route = build_road(HighwayEnvConfig(), route_file="left_90_r9.csv")  # 150 m, left turn, 100 m
    (start, end, sign), = route.turns()
    assert sign == -1 and start == pytest.approx(150, abs=3)
    assert route.command(0.0, 30.0) == (0, math.inf)  # follow the lane
    command, distance = route.command(start - 20.0, 30.0)
    assert command == 1 and distance == pytest.approx(20.0)  # left, 20 m ahead
    assert route.command(start + 2.0, 30.0) == (1, 0.0)  # inside the turn
    assert route.command(end + 1.0, 30.0)[0] == 0
    _, right = build_road(HighwayEnvConfig(), route_file="right_90_r8.csv")
    assert right.command(right.turns()[0][0] - 5, 30.0)[0] == 2
    _, curve = build_road(HighwayEnvConfig(), route_file="right_curve_r60.csv")
    assert curve.turns() == []  # a 60 m curve is lane following


def test_the_speed_limit_holds_a_stretch_s_speed_and_brakes_into_a_slower_arc():
    route = Route(*read_points(str(ROUTES_DIR / "right_90_r8.csv")))  # 160 m straight, r = 8 m arc, 90 m out
    arc = math.sqrt(3.0 * 8.0)  # the generator's arc speed: 3 m/s^2 of lateral acceleration
    braking = (8.33 ** 2 - arc ** 2) / (2 * 2.0)  # m to slow from the straight's speed at 2 m/s^2
    assert route.speed_limit(100.0, 2.0) == pytest.approx(8.33)  # linear interpolation gives ~6.2
    assert route.speed_limit(160.0 - braking - 1.0, 2.0) == pytest.approx(8.33)
    assert route.speed_limit(160.0 - braking / 2, 2.0) == pytest.approx(math.sqrt(arc ** 2 + braking * 2.0), abs=0.05)
    assert route.speed_limit(165.0, 2.0) == pytest.approx(arc, abs=0.01)
    assert route.speed_limit(200.0, 2.0) == pytest.approx(8.33)  # the exit straight is its own speed again
    assert Route(route.xy).speed_limit(165.0, 2.0) == math.inf  # no target speeds: no limit


def test_the_env_reports_the_speed_limit_only_where_the_reward_follows_it():
    name = "right_90_r8.csv"
    for deceleration, limited in ((None, False), (2.0, True)):
        cfg = HighwayEnvConfig(camera="none", route_file=name)
        cfg.reward.route_speed_deceleration = deceleration
        env = HighwayDrivingEnv(cfg, 0, role="eval")
        env.reset(seed=0)
        info = env.step(np.array([0.0, 0.5], np.float32))[-1]
        assert (info["speed_limit"] == pytest.approx(8.33)) if limited else info["speed_limit"] == math.inf


def test_an_env_on_a_split_draws_routes_and_evaluates_the_one_asked_for():
    cfg = HighwayEnvConfig(camera="none", routes="train", eval_routes="test")
    train = HighwayDrivingEnv(cfg, 0, role="train")
    drawn = {train.reset(seed=s)[1]["route"] for s in range(40)}
    assert drawn == set(cfg.route_splits["train"])
    assert [train.reset(seed=s)[1]["route"] for s in range(5)] == [train.reset(seed=s)[1]["route"] for s in range(5)]
    ev = HighwayDrivingEnv(cfg, 0, role="eval")
    for name in cfg.route_splits["test"]:
        _, info = ev.reset(seed=0, options={"route": name})
        assert info["route"] == name and ev.route.length == build_road(cfg, route_file=name)[1].length
    with pytest.raises(ValueError, match="not one of this env's routes"):
        ev.reset(seed=0, options={"route": "right_90_r20.csv"})


def test_a_route_file_from_anywhere_drives(tmp_path):
    path = tmp_path / "mine.csv"
    xy, speed = route_points([("S", 50), ("L", 30, 45), ("S", 50)])
    path.write_text("# a comment\nx,y,target_speed\n" + "".join(f"{x},{y},{v}\n" for (x, y), v in zip(xy, speed)))
    env = HighwayDrivingEnv(HighwayEnvConfig(camera="dashcam", image_height=36, image_width=36,
                                             route_file=str(path)), 20)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.5]))
    assert not terminated and info["distance_to_goal"] < env.route.length


@pytest.mark.parametrize("text, problem", [
    ("x,y\n0,0\n1,0\n", r"bad.csv:1: the header needs the columns x, y, target_speed \(missing target_speed\)"),
    ("x,y,target_speed\n0,0,5\n1,abc,5\n", r"bad.csv:3: not a number"),
    ("# c\nx,y,target_speed\n0,0,5\n", r"bad.csv:3: a route needs at least 2 distinct points"),
    ("x,y,target_speed\n0,0,5\n1,0\n", r"bad.csv:3: 2 values, the header has 3"),
    ("x,y,target_speed\n0,0,5\n1,0,-2\n", r"bad.csv:3: target_speed must be >= 0"),
    ("x,y,target_speed\n0,0,5\n1,nan,5\n", r"bad.csv:3: non-finite value"),
])
def test_a_bad_route_file_is_one_line_naming_file_line_and_problem(tmp_path, text, problem):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(RouteFileError, match=problem) as e:
        HighwayDrivingEnv(HighwayEnvConfig(camera="none", route_file=str(bad)), 0)
    assert "\n" not in str(e.value)


def test_a_missing_route_file_and_a_too_tight_arc_are_named(tmp_path):
    with pytest.raises(RouteFileError, match="no such route file"):
        build_road(HighwayEnvConfig(), route_file=str(tmp_path / "nope.csv"))
    tight = tmp_path / "tight.csv"
    xy, speed = route_points([("S", 20), ("L", 4, 90), ("S", 20)])
    tight.write_text("x,y,target_speed\n" + "".join(f"{x},{y},{v}\n" for (x, y), v in zip(xy, speed)))
    with pytest.raises(RouteFileError, match=r"tight.csv: an arc of radius 4.0 m is too tight for two lanes"):
        build_road(HighwayEnvConfig(), route_file=str(tight))


def test_route_settings_are_checked():
    with pytest.raises(ConfigError, match="env.routes: names no split"):
        HighwayEnvConfig(routes="nope")
    with pytest.raises(ConfigError, match="env.route_file"):
        HighwayEnvConfig(routes="train", route_file="x.csv")
    with pytest.raises(ConfigError, match="env.route_splits.empty"):
        HighwayEnvConfig(route_splits={"empty": []})


def test_npcs_spawn_behind_the_ego_with_a_lead_in():
    behind = 0
    for seed in range(10):
        env = HighwayDrivingEnv(HighwayEnvConfig(camera="none", npc_lead_in=60.0), 20)
        env.reset(seed=seed)
        for v in env.road.vehicles:
            if v is not env.ego:
                behind += env.route.project(v.position).s <= 0.0 and v.position[0] > env.ego.position[0]
    assert behind >= 5  # the built-in road heads west (-x): behind is +x
    reference = HighwayDrivingEnv(HighwayEnvConfig(camera="none"), 20)
    reference.reset(seed=0)
    assert all(reference.route.project(v.position).s >= reference.cfg.npc_min_distance - 1e-6
               for v in reference.road.vehicles if v is not reference.ego)

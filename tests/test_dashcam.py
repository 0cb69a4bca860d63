"""The embedded dashcam against pinhole geometry: what a camera with CARLA's mount must see."""

import math

import numpy as np
import pytest

from av_td3.config import HighwayEnvConfig
from av_td3.envs.contract import LUMA, to_gray_uint8
from av_td3.envs.dashcam import BODY_COLOURS, BOX_HEIGHT, FACE_SHADE, MARKING, ROAD, TEXTURES, DashCamera
from av_td3.envs.highway import HighwayDrivingEnv, build_road


def write_route(tmp_path, name, points):
    path = tmp_path / name
    path.write_text("x,y,target_speed\n" + "".join(f"{x},{y},8\n" for x, y in points))
    return str(path)


class Pose:
    """A stand-in for a vehicle: what the camera reads (position, heading, size, paint)."""

    LENGTH, WIDTH = 5.0, 2.0

    def __init__(self, x, y, heading=0.0, paint=0):
        self.position, self.heading, self.paint = np.array([x, y], float), heading, paint


@pytest.fixture
def straight(tmp_path):
    """A 300 m straight heading +x (the right lane's centre is y = 0, the left lane's y = -3.5)."""
    cfg = HighwayEnvConfig(camera="dashcam", route_file=write_route(tmp_path, "straight.csv", [(0, 0), (300, 0)]))
    network, route = build_road(cfg)
    return cfg, DashCamera(cfg, network, route)


def marking_columns(cam, rgb, row):
    """Centres of the runs of lane-marking pixels in an image row."""
    marking = np.all(rgb[row] >= cam_marking_floor(cam), axis=1)
    cols = np.flatnonzero(marking)
    if not len(cols):
        return []
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    return [float(r.mean()) + 0.5 for r in runs]


def cam_marking_floor(cam):
    return cam.palette_rgb[MARKING * TEXTURES:(MARKING + 1) * TEXTURES].min(axis=0)


def test_lane_edges_meet_at_the_principal_point_row(straight):
    cfg, cam = straight
    rgb = cam.render([], Pose(20.0, 0.0)).copy()
    # The road's solid edges, right (y = +1.75) and left (y = -5.25), on rows 6-19 m ahead (nearer, the
    # left edge leaves the 90-degree view; farther, a 0.15 m marking is under a pixel wide).
    rows = range(int(cam.cy) + 10, int(cam.cy) + 34)
    left, right = [], []
    for r in rows:
        cols = marking_columns(cam, rgb, r)
        assert len(cols) >= 2, f"row {r}: {cols}"
        left.append((r + 0.5, cols[0]))
        right.append((r + 0.5, cols[-1]))
    fl = np.polyfit([c for _, c in left], [r for r, _ in left], 1)
    fr = np.polyfit([c for _, c in right], [r for r, _ in right], 1)
    u = (fr[1] - fl[1]) / (fl[0] - fr[0])
    v = fl[0] * u + fl[1]
    assert v == pytest.approx(cam.cy, abs=1.0)  # pitch 0: the vanishing point lies on the principal row
    assert u == pytest.approx(cam.cx, abs=1.0)  # straight ahead on a straight road


@pytest.mark.parametrize("distance", [8.0, 15.0, 30.0])
def test_a_box_spans_the_rows_the_pinhole_formula_gives(straight, distance):
    cfg, cam = straight
    ego = Pose(20.0, 0.0)
    npc = Pose(20.0 + cfg.camera_x + distance + Pose.LENGTH / 2, 0.0, paint=1)  # its rear face `distance` ahead
    rgb = cam.render([npc], ego).copy()
    colour = np.round(BODY_COLOURS[1] * FACE_SHADE["end"]).astype(np.uint8)
    rows = np.flatnonzero(np.all(rgb[:, int(cam.cx)] == colour, axis=1))
    top = cam.cy - cam.f * (BOX_HEIGHT - cfg.camera_z) / distance  # pixel-edge coordinates
    bottom = cam.cy + cam.f * cfg.camera_z / distance
    assert rows.min() == pytest.approx(top, abs=1.0) and rows.max() + 1 == pytest.approx(bottom, abs=1.0)


def test_markings_of_a_right_hand_curve_bend_right(tmp_path):
    r = 40.0
    phi = np.linspace(-math.pi / 2, 0.0, 60)  # right turn (y grows to the right) after 60 m of straight
    arc = [(60 + r * math.cos(p), r + r * math.sin(p)) for p in phi]
    cfg = HighwayEnvConfig(camera="dashcam", route_file=write_route(tmp_path, "curve.csv", [(0, 0), (60, 0), *arc[1:]]))
    network, route = build_road(cfg)
    cam = DashCamera(cfg, network, route)
    rgb = cam.render([], Pose(50.0, 0.0)).copy()  # 10 m before the curve
    # The road's right edge: the last marking run of each row. Near rows are straight road; the far
    # rows must lie right of the straight line through the near ones.
    near = [(r + 0.5, marking_columns(cam, rgb, r)[-1]) for r in range(cam.height - 20, cam.height - 2)]
    fit = np.polyfit([v for v, _ in near], [u for _, u in near], 1)
    far_row = cam.ground_row + 6
    far = marking_columns(cam, rgb, far_row)
    assert far and far[-1] > np.polyval(fit, far_row + 0.5) + 3


def test_a_near_car_hides_a_far_one(straight):
    cfg, cam = straight
    ego = Pose(20.0, 0.0)
    near, far = Pose(35.0, 0.0, paint=1), Pose(50.0, 0.0, paint=2)
    colour = {k: np.round(BODY_COLOURS[k] * FACE_SHADE["end"]).astype(np.uint8) for k in (1, 2)}
    col = int(cam.cx)
    for order in ([near, far], [far, near]):  # whatever order the env lists them in
        rgb = cam.render(order, ego).copy()
        column = rgb[:, col]
        assert np.all(column == colour[1], axis=1).any()
        assert not np.all(column == colour[2], axis=1).any()  # the far car is behind the near one
    alone = cam.render([far], ego).copy()[:, col]
    assert np.all(alone == colour[2], axis=1).any()  # ...and visible without it


def test_npc_colours_paint_the_cars_in_turn(tmp_path):
    """env.npc_colours replaces the body colours, one per NPC in turn (paint modulo their number), and the
    built-in red car's back is inside the road's gray (why the setting exists)."""
    cfg = HighwayEnvConfig(camera="dashcam", npc_colours=[[10, 200, 10], [250, 0, 250]],
                           route_file=write_route(tmp_path, "straight.csv", [(0, 0), (300, 0)]))
    cam = DashCamera(cfg, *build_road(cfg))
    ego = Pose(20.0, 0.0)
    for paint, body in ((0, (10, 200, 10)), (1, (250, 0, 250)), (2, (10, 200, 10))):
        rgb = cam.render([Pose(35.0, 0.0, paint=paint)], ego).copy()
        colour = np.round(np.array(body) * FACE_SHADE["end"]).astype(np.uint8)
        assert np.all(rgb[:, int(cam.cx)] == colour, axis=1).sum() > 5, paint
    road = cam.palette_rgb[ROAD * TEXTURES:(ROAD + 1) * TEXTURES] @ np.array(LUMA)
    red_back = np.round(BODY_COLOURS[4] * FACE_SHADE["end"]) @ np.array(LUMA)
    assert road.min() <= red_back <= road.max()


@pytest.mark.parametrize("over, message", [
    (dict(camera="dashcam", npc_colours=[[1, 2]]), "env.npc_colours"),
    (dict(camera="dashcam", npc_colours=[[0, 0, 300]]), "env.npc_colours"),
    (dict(camera="dashcam", npc_colours=[]), "env.npc_colours"),
    (dict(camera="topdown", npc_colours=[[0, 0, 0]]), "colours the dashcam's NPCs only"),
])
def test_bad_npc_colours_name_the_setting(over, message):
    from av_td3.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        HighwayEnvConfig(**over)


def test_an_ego_offset_to_the_right_shifts_the_lane_lines_left(straight):
    cfg, cam = straight
    row = cam.height - 10
    centred = marking_columns(cam, cam.render([], Pose(20.0, 0.0)).copy(), row)
    right = marking_columns(cam, cam.render([], Pose(20.0, 0.5)).copy(), row)
    assert len(centred) == len(right) >= 2
    assert all(b < a - 1 for a, b in zip(centred, right))


def test_a_box_beside_the_camera_is_clipped_not_mirrored(straight):
    cfg, cam = straight
    ego = Pose(20.0, 0.0)
    beside = Pose(20.0 + cfg.camera_x, -3.5, paint=1)  # in the left lane, level with the camera
    rgb = cam.render([beside], ego).copy()
    body = np.all(rgb[..., :] == np.round(BODY_COLOURS[1] * FACE_SHADE["side"]).astype(np.uint8), axis=2)
    cols = np.flatnonzero(body.any(axis=0))
    assert len(cols) and cols.max() < cam.cx  # only on the left half of the image


def test_the_frame_the_policy_sees_is_the_shared_gray_resize(straight):
    cfg, cam = straight
    ego = Pose(20.0, 0.0)
    gray, rgb = cam.frame([], ego, rgb=True)
    np.testing.assert_array_equal(gray, to_gray_uint8(rgb, cfg.image_height, cfg.image_width))
    assert rgb.shape == (cfg.camera_height, cfg.camera_width, 3)


def test_dashcam_env_frames_are_the_same_on_every_run():
    frames = []
    for _ in range(2):
        env = HighwayDrivingEnv(HighwayEnvConfig(camera="dashcam", image_height=36, image_width=36), 20)
        obs, _ = env.reset(seed=4)
        for _ in range(60):
            obs, *_ = env.step(np.array([0.02, 0.6]))
        frames.append(obs["image"])
    np.testing.assert_array_equal(*frames)
    assert frames[0].std() > 10  # a picture, not a blank


def test_a_run_out_shows_road_past_the_goal(tmp_path):
    """10 m before the goal of a 100 m straight, the ground 17 m ahead shows markings only where the road
    goes on past the goal (env.road_run_out)."""
    route = write_route(tmp_path, "short.csv", [(0, 0), (100, 0)])
    seen = {}
    for run_out in (0.0, 40.0):
        cfg = HighwayEnvConfig(camera="dashcam", route_file=route, road_run_out=run_out)
        network, road = build_road(cfg)
        cam = DashCamera(cfg, network, road)
        rgb = cam.render([], Pose(90.0, 0.0)).copy()
        row = int(cam.cy + cam.f * cfg.camera_z / 17.0)  # the ground 17 m ahead of the camera (pitch 0)
        seen[run_out] = marking_columns(cam, rgb, row)
        assert ("out" in network.graph.get("goal", {})) == (run_out > 0)
    assert seen[0.0] == [] and len(seen[40.0]) >= 2


def test_npcs_leave_at_the_end_of_the_run_out_not_at_the_goal(tmp_path):
    route = write_route(tmp_path, "short.csv", [(0, 0), (100, 0)])
    env = HighwayDrivingEnv(HighwayEnvConfig(camera="none", route_file=route, road_run_out=40.0), 0)
    env.reset(seed=0)
    npc_class = env.npc_class
    env.road.vehicles = [env.ego]
    for x in (105.0, 139.0, 141.0):  # past the goal on the run-out, near its end, past its end
        lane = env.road.network.get_closest_lane_index(np.array([x, 0.0]))
        v = npc_class(env.road, np.array([x, 0.0]), 0.0, 5.0, target_lane_index=lane)
        v.lane_index, v.lane = lane, env.road.network.get_lane(lane)
        env.road.vehicles.append(v)
    env._drop_finished_npcs()
    assert sorted(float(v.position[0]) for v in env.road.vehicles if v is not env.ego) == [105.0, 139.0]

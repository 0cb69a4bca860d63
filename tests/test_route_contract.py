"""The shared contract (contract.py) and route geometry (route.py), on hand-made cases with known answers.

Frames are left-handed as in CARLA: y is to the right of x, yaw grows from x towards y."""

import math

import numpy as np
import pytest

from av_td3.envs.contract import (N_WAYPOINTS, VECTOR_SIZE, FrameStack, build_vector, marking_overlap,
                                  resize_area, split_action, to_gray_uint8)
from av_td3.envs.route import Route, to_vehicle_frame, wrap_angle

STRAIGHT = Route(np.array([[0.0, 0.0], [100.0, 0.0]]))
# East 10 m, then a right turn (towards +y) and 10 m more.
L_SHAPE = Route(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))


# --- Route --------------------------------------------------------------------------------------------
def test_projection_on_a_straight_signs_and_arc_length():
    right = STRAIGHT.project(np.array([30.0, 1.5]))
    left = STRAIGHT.project(np.array([30.0, -0.5]))
    assert (right.s, right.lateral, right.route_yaw) == pytest.approx((30.0, 1.5, 0.0))
    assert (left.s, left.lateral) == pytest.approx((30.0, -0.5))
    # Before the start the closest point is the start.
    assert STRAIGHT.project(np.array([-3.0, 0.0])).s == 0.0


def test_projection_on_an_l_shaped_route():
    first = L_SHAPE.project(np.array([5.0, -2.0]))  # left of the eastbound leg
    assert (first.s, first.lateral, first.route_yaw) == pytest.approx((5.0, -2.0, 0.0))
    second = L_SHAPE.project(np.array([12.0, 5.0]))  # heading +y the right is -x: x = 12 is 2 m left
    assert (second.s, second.lateral, second.route_yaw) == pytest.approx((15.0, -2.0, math.pi / 2))
    inside = L_SHAPE.project(np.array([9.0, 6.0]))  # 1 m right of the second leg
    assert (inside.s, inside.lateral) == pytest.approx((16.0, 1.0))
    assert L_SHAPE.yaw_at(15.0) == pytest.approx(math.pi / 2)
    assert L_SHAPE.point_at(13.0) == pytest.approx([10.0, 3.0])


def project_one(route, p):
    """A single point's projection written out (the per-point form Route.project had)."""
    rel = p - route.xy[:-1]
    t = np.clip(np.einsum("ij,ij->i", rel, route.seg_dir), 0.0, route.seg_len)
    closest = route.xy[:-1] + route.seg_dir * t[:, None]
    i = int(np.argmin(np.sum((p - closest) ** 2, axis=1)))
    yaw = float(route.seg_yaw[i])
    off = p - closest[i]
    return (float(route.s[i] + t[i]), float(-off[0] * math.sin(yaw) + off[1] * math.cos(yaw)), yaw, i)


def test_projecting_many_points_at_once_is_projecting_each_bit_for_bit():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.uniform([-5.0, -5.0], [15.0, 15.0], (500, 2)), [[10.0, 0.0], [0.0, 0.0], [10.0, 10.0]]])
    together = L_SHAPE.project_many(points)
    expected = [project_one(L_SHAPE, p) for p in points]
    assert [(q.s, q.lateral, q.route_yaw, q.index) for q in together] == expected  # every float exactly
    assert [L_SHAPE.project(p) for p in points[:50]] == together[:50]
    assert L_SHAPE.project_many(np.zeros((0, 2))) == []


@pytest.mark.parametrize("lateral, heading", [(0.0, 0.0), (0.6, 0.0), (-0.9, 0.0), (0.3, 0.2), (-0.2, -0.35),
                                               (1.2, 0.5)])
def test_footprint_overlap_on_a_straight_is_the_box_in_a_straight_lane(lateral, heading):
    # 5 x 2 m car 50 m along a straight: both placements of the box are exact there.
    exact = STRAIGHT.footprint_overlap(np.array([50.0, lateral]), heading, STRAIGHT.project([50.0, lateral]).index,
                                       2.5, 1.0, 3.5)
    assert exact == pytest.approx(marking_overlap(lateral, heading, 2.5, 1.0, 3.5), abs=1e-9)


@pytest.mark.parametrize("radius", [8.0, 20.0])
@pytest.mark.parametrize("offset, heading", [(0.0, 0.0), (-0.3, -0.2), (0.4, 0.15), (-0.7, 0.1), (0.2, -0.3)])
def test_footprint_overlap_on_an_arc_is_the_box_against_the_lanes_circles(radius, offset, heading):
    # A right turn (towards +y) about the centre (0, radius), densified from 1 degree steps; the car at a
    # quarter of it, ``offset`` m right of the centre line (towards the inside), turned ``heading`` rad
    # right of the route. The box's nearest point to the centre (clamped in its own frame) and its
    # farthest corner give the overlap past the inner and outer circles of a 3.5 m lane.
    a = np.radians(np.arange(0.0, 181.0))
    arc = Route(np.c_[radius * np.sin(a), radius * (1 - np.cos(a))], spacing=0.1)
    phi = math.radians(45.0)
    centre = np.array([0.0, radius])
    position = centre + (radius - offset) * np.array([math.sin(phi), -math.cos(phi)])
    yaw = phi + heading
    forward, right = np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])
    rel = centre - position
    nearest = np.clip([rel @ forward, rel @ right], [-2.5, -1.0], [2.5, 1.0])
    inner = (radius - 1.75) - np.hypot(*(rel - nearest[0] * forward - nearest[1] * right))
    outer = max(np.hypot(*(position + x * forward + y * right - centre)) for x in (-2.5, 2.5) for y in (-1.0, 1.0)) \
        - (radius + 1.75)
    index = arc.project(position).index
    # The polyline's chords and the outline's 0.5 m sampling stay within a centimetre of the circles.
    assert arc.footprint_overlap(position, yaw, index, 2.5, 1.0, 3.5) == pytest.approx(max(inner, outer, 0.0), abs=0.01)


def test_footprint_overlap_counts_fewer_on_the_inside_of_a_tight_turn_than_a_straight_lane():
    # 0.45 m inside an 8 m arc's centre line, turned 0.2 rad into the turn: the straight-lane box
    # reaches 0.17 m over the inside marking, the car itself does not touch it.
    a = np.radians(np.arange(0.0, 181.0))
    arc = Route(np.c_[8 * np.sin(a), 8 * (1 - np.cos(a))])
    phi = math.radians(60.0)
    position = np.array([0.0, 8.0]) + 7.55 * np.array([math.sin(phi), -math.cos(phi)])
    assert marking_overlap(0.45, 0.2, 2.5, 1.0, 3.5) > 0.15
    assert arc.footprint_overlap(position, phi + 0.2, arc.project(position).index, 2.5, 1.0, 3.5) == 0.0


def test_heading_error_sign():
    """Heading error = vehicle yaw - route yaw: positive when the vehicle points right of the route."""
    route_yaw = L_SHAPE.project(np.array([10.0, 5.0])).route_yaw
    assert wrap_angle(math.pi / 2 + 0.2 - route_yaw) == pytest.approx(0.2)  # turned right of +y
    assert wrap_angle(0.0 - route_yaw) == pytest.approx(-math.pi / 2)  # facing +x: to the route's left
    assert wrap_angle(3 * math.pi / 2 + 0.1) == pytest.approx(-math.pi / 2 + 0.1)


def test_densifying_keeps_the_length_and_corners():
    for spacing in (0.3, 0.5, 2.0, 7.0):
        route = Route(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]), spacing=spacing)
        assert route.length == pytest.approx(20.0)
        assert route.s[-1] == pytest.approx(20.0)
        assert route.goal == pytest.approx([10.0, 10.0])
        assert np.all(np.diff(route.s) <= spacing + 1e-9)
    diagonal = Route(np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]]))  # a repeated point is dropped
    assert diagonal.length == pytest.approx(5.0)
    assert diagonal.start_yaw() == pytest.approx(math.atan2(4, 3))


def test_waypoints_ahead_for_a_vehicle_along_the_route():
    wp = STRAIGHT.waypoints_ahead(np.array([0.0, 0.0]), 0.0, 0.0)
    assert wp.shape == (N_WAYPOINTS, 2)
    np.testing.assert_allclose(wp, np.stack([2.0 * np.arange(1, 26), np.zeros(25)], axis=1), atol=1e-12)
    # 1 m right of the route the route lies 1 m to the vehicle's left.
    off = STRAIGHT.waypoints_ahead(np.array([10.0, 1.0]), 0.0, 10.0)
    np.testing.assert_allclose(off[:3], [[2.0, -1.0], [4.0, -1.0], [6.0, -1.0]], atol=1e-12)


def test_waypoints_ahead_for_a_rotated_vehicle():
    # Facing +y (90 deg right of the route): the route ahead runs to the vehicle's left.
    wp = STRAIGHT.waypoints_ahead(np.array([0.0, 0.0]), math.pi / 2, 0.0)
    np.testing.assert_allclose(wp[:2], [[0.0, -2.0], [0.0, -4.0]], atol=1e-12)
    # Facing back along the route (yaw pi): the route is behind.
    back = STRAIGHT.waypoints_ahead(np.array([0.0, 0.0]), math.pi, 0.0)
    assert back[0] == pytest.approx([-2.0, 0.0], abs=1e-12)
    # 45 degrees right of the route: a point 2 m ahead on it is ahead-left.
    diag = to_vehicle_frame(np.array([[2.0, 0.0]]), np.array([0.0, 0.0]), math.pi / 4)
    assert diag[0] == pytest.approx([math.sqrt(2), -math.sqrt(2)])


def test_waypoints_past_the_goal_repeat_the_goal():
    short = Route(np.array([[0.0, 0.0], [10.0, 0.0]]))
    wp = short.waypoints_ahead(np.array([0.0, 0.0]), 0.0, 0.0)
    assert wp[:5, 0] == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0])
    assert np.all(wp[4:] == wp[4])


# --- observation vector, action, frames ---------------------------------------------------------------
def test_build_vector_layout_and_scales():
    waypoints = np.stack([np.arange(1, 26) * 2.0, -np.arange(1, 26) * 0.5], axis=1)
    v = build_vector(15.0, -1.75, math.pi / 2, waypoints)
    assert v.shape == (VECTOR_SIZE,) and v.dtype == np.float32
    assert v[:3] == pytest.approx([0.5, -0.5, 0.5])  # speed / 30, lateral / 3.5, heading / pi
    assert v[3:7] == pytest.approx([2.0 / 50, -0.5 / 50, 4.0 / 50, -1.0 / 50])  # (x, y) interleaved
    assert v[-2:] == pytest.approx([50.0 / 50, -12.5 / 50])


@pytest.mark.parametrize("action, expected", [
    ([0.3, 0.5], (0.3, 0.5, 0.0)),
    ([-1.0, -0.7], (-1.0, 0.0, 0.7)),
    ([2.0, -3.0], (1.0, 0.0, 1.0)),  # clipped
    ([0.0, 0.0], (0.0, 0.0, 0.0)),
])
def test_split_action(action, expected):
    assert split_action(np.array(action, dtype=np.float32)) == pytest.approx(expected)


def test_frame_stack_zeros_at_reset_oldest_first():
    stack = FrameStack(4, 3, 2)
    frames = [np.full((3, 2), i, dtype=np.uint8) for i in range(1, 7)]
    first = stack.push(frames[0])
    assert first.shape == (4, 3, 2) and first.dtype == np.uint8
    assert [int(f[0, 0]) for f in first] == [0, 0, 0, 1]
    for f in frames[1:]:
        out = stack.push(f)
    assert [int(f[0, 0]) for f in out] == [3, 4, 5, 6]
    stack.reset()
    assert [int(f[0, 0]) for f in stack.push(frames[0])] == [0, 0, 0, 1]
    with pytest.raises(AssertionError):
        stack.push(np.zeros((3, 2), dtype=np.float32))


def test_to_gray_uint8_on_a_constant_image():
    rgb = np.zeros((144, 256, 3), dtype=np.uint8)
    rgb[...] = (100, 150, 200)  # luma 0.299 * 100 + 0.587 * 150 + 0.114 * 200 = 140.75
    gray = to_gray_uint8(rgb, 36, 36)
    assert gray.shape == (36, 36) and gray.dtype == np.uint8
    assert np.all(gray == 141)


def test_resize_area_on_blocks():
    blocks = np.kron(np.array([[0.0, 50.0], [100.0, 200.0]]), np.ones((3, 3)))  # 6 x 6, 3 x 3 blocks
    np.testing.assert_allclose(resize_area(blocks, 2, 2), [[0.0, 50.0], [100.0, 200.0]], atol=1e-9)
    # Fractional boxes (1.5 px): each output is the exact area mean of its box.
    img = np.array([[0.0, 0.0, 9.0], [0.0, 0.0, 9.0], [9.0, 9.0, 9.0]])
    np.testing.assert_allclose(resize_area(img, 2, 2), [[0.0, 6.0], [6.0, 8.0]], atol=1e-9)
    # The mean survives any resize.
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (30, 40))
    assert resize_area(noise, 7, 9).mean() == pytest.approx(noise.mean())
    np.testing.assert_allclose(resize_area(noise, 30, 40), noise)

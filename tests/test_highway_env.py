"""HighwayDrivingEnv on real highway-env: the contract, seeding, signs, episode ends, a full route."""

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from highway_env.vehicle.kinematics import Vehicle

from av_td3.config.env import HighwayEnvConfig
from av_td3.envs.contract import IMAGE, MAX_STEER_RAD, VECTOR, VECTOR_SIZE, to_gray_uint8
from av_td3.envs.highway import HighwayDrivingEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning",
                                        "ignore:.*alternative render modes:UserWarning")

SIZE = 36  # px: 1 m per pixel over the default 36 m view


def make(npc_vehicles: int = 0, render_mode=None, **changes) -> HighwayDrivingEnv:
    cfg = HighwayEnvConfig(image_height=SIZE, image_width=SIZE, **changes)
    return HighwayDrivingEnv(cfg, npc_vehicles, render_mode=render_mode)


def pure_pursuit(obs, target_speed: float = 12.0, wheelbase: float = 2.875) -> np.ndarray:
    """Steer for the waypoint 6 m ahead (in the observation's vector), P control on the speed."""
    vector = obs[VECTOR]
    x, y = vector[3:].reshape(25, 2)[2] * 50.0
    ld = math.hypot(x, y)
    angle = math.atan2(2 * wheelbase * math.sin(math.atan2(y, x)), ld) if ld > 0.1 else 0.0
    throttle = 0.5 * (target_speed - vector[0] * 30.0)
    return np.clip([angle / MAX_STEER_RAD, throttle], -1.0, 1.0).astype(np.float32)


def run(env, actions):
    out = []
    for a in actions:
        out.append(env.step(np.asarray(a, dtype=np.float32)))
        if out[-1][2] or out[-1][3]:
            break
    return out


def test_check_env_passes():
    check_env(make(20, render_mode="rgb_array"))
    check_env(make(0), skip_render_check=True)


def test_observation_contract():
    env = make(20, frame_stack=4)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    assert obs[IMAGE].dtype == np.uint8 and obs[IMAGE].shape == (4, SIZE, SIZE)
    assert obs[VECTOR].dtype == np.float32 and obs[VECTOR].shape == (VECTOR_SIZE,)
    assert not obs[IMAGE][:3].any() and obs[IMAGE][3].any()  # zeros before the first frame, oldest first
    assert info["npc_vehicles"] == 5  # round(20 * traffic_fraction 0.25)
    # Standing at the start on the centre line, the waypoints run straight ahead 2 m apart.
    np.testing.assert_allclose(obs[VECTOR][:3], 0.0, atol=1e-6)
    np.testing.assert_allclose(obs[VECTOR][3:9], [2 / 50, 0, 4 / 50, 0, 6 / 50, 0], atol=1e-6)
    # Heading up: the road runs up the image; the other lane is to the ego's left, off-road on both sides.
    frame = obs[IMAGE][3]
    assert frame[0, SIZE // 2] > 0 and frame[0, SIZE // 2 - 3] > 0  # the lanes, far ahead
    assert frame[0, 1] == 0 and frame[0, SIZE - 2] == 0
    obs, *_, info = env.step(np.zeros(2, dtype=np.float32))
    assert obs[IMAGE][2:].any() and not obs[IMAGE][:2].any()
    assert set(info["reward_components"]) == {"efficiency", "lane_keeping", "comfort", "safety", "progress"}
    assert info["dt"] == pytest.approx(0.05) and info["is_success"] is False


def test_image_is_the_contract_grayscale_of_the_rendered_view():
    env = make(20, render_mode="rgb_array")
    obs, _ = env.reset(seed=2)
    for _ in range(3):
        rgb = env.render()
        assert rgb.shape == (SIZE * env.cfg.render_scale, SIZE * env.cfg.render_scale, 3)
        gray = to_gray_uint8(rgb, SIZE, SIZE).astype(int)
        assert np.abs(gray - obs[IMAGE][-1]).max() <= 1  # the same luma and area mean (rounding aside)
        obs, *_ = env.step(np.array([0.1, 1.0], dtype=np.float32))


def test_vehicle_sprites_drawn_once_are_what_highway_env_draws_every_frame():
    """The camera draws NPCs and the ego from cached sprites (TopDownCamera._draw): the view must be
    pixel for pixel what VehicleGraphics.display gives, along the route (the turn's headings included)."""
    import pygame
    from highway_env.vehicle.graphics import VehicleGraphics

    env = make(20, random_start=1.0)  # training episodes start anywhere on the route: many headings
    cam, headings = env.camera, set()
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        for step in range(20):
            if step % 10 == 0:
                frames = []
                for draw in (cam._draw, lambda v: VehicleGraphics.display(v, cam.view, offscreen=True)):
                    cam.view.fill((0, 0, 0))
                    for v in env.road.vehicles:
                        draw(v)
                    frames.append(pygame.surfarray.array3d(cam.view))
                assert frames[0].any() and np.array_equal(frames[0], frames[1]), (seed, step)
                headings.add(round(float(env.ego.heading), 1))
            obs, _, terminated, truncated, _ = env.step(pure_pursuit(obs))
            if terminated or truncated:
                break
    assert len(headings) >= 4 and len(cam._sprites) >= 2  # many headings, more than one sprite


def test_camera_gray_is_the_luma_block_mean_of_every_colour():
    """to_gray's luma table against the (pixels, 4) @ (4,) product it replaces, with its block mean,
    over all 2^24 colours (both alpha values a surface can hold): equal bit for bit, or the
    observations would differ from the env's as it was."""
    cam = make().camera
    k, side = cam.k, SIZE * cam.k  # the camera's own shape: BLAS may pick its kernel by size
    colours = np.arange(2**24, dtype=np.uint32)
    colours = np.concatenate([colours, colours[: -len(colours) % (side * side)]]).reshape(-1, side, side)
    for alpha in (0, 255):
        samples = colours | np.uint32(alpha << 24)
        luma = samples.view(np.uint8).reshape(*samples.shape, 4).astype(np.float32) @ cam.luma
        total = sum(luma[:, i::k, j::k] for i in range(k) for j in range(k))
        expected = (total / (k * k)).round().clip(0, 255).astype(np.uint8)
        for image, want in zip(samples, expected):
            assert np.array_equal(cam.to_gray(image), want)


def test_same_seed_same_episode_and_other_seed_other_traffic():
    rng = np.random.default_rng(1)
    actions = np.stack([rng.uniform(-0.1, 0.1, 40), rng.uniform(0.2, 1.0, 40)], axis=1)
    episodes = []
    for _ in range(2):
        env = make(20)
        obs, _ = env.reset(seed=7)
        steps = run(env, actions)
        episodes.append((obs, steps, [v.position.copy() for v in env.road.vehicles]))
    (obs_a, steps_a, npcs_a), (obs_b, steps_b, npcs_b) = episodes
    for key in (IMAGE, VECTOR):
        np.testing.assert_array_equal(obs_a[key], obs_b[key])
    assert len(steps_a) == len(steps_b) == 40
    for (oa, ra, _, _, ia), (ob, rb, _, _, ib) in zip(steps_a, steps_b, strict=True):
        np.testing.assert_array_equal(oa[IMAGE], ob[IMAGE])
        np.testing.assert_array_equal(oa[VECTOR], ob[VECTOR])
        assert ra == rb and ia == ib
    np.testing.assert_array_equal(np.array(npcs_a), np.array(npcs_b))
    env = make(20)
    env.reset(seed=8)
    assert not np.allclose(np.array([v.position for v in env.road.vehicles[1:]]), np.array(npcs_a[1:]))


def test_npcs_are_placed_away_from_the_ego_on_both_lanes():
    env = make(100)  # 25 NPCs
    env.reset(seed=3)
    npcs = env.road.vehicles[1:]
    assert len(npcs) >= 20
    s = np.array([env.route.project(v.position).s for v in npcs])
    lateral = np.array([env.route.project(v.position).lateral for v in npcs])
    assert s.min() >= env.cfg.npc_min_distance - 1e-6
    assert np.any(np.abs(lateral) < 0.1) and np.any(np.abs(lateral + env.cfg.reward.lane_width) < 0.1)


def test_steering_right_makes_lateral_deviation_positive():
    env = make()
    env.reset(seed=0)
    info = run(env, [[0.2, 1.0]] * 25)[-1][4]
    assert info["lateral_deviation"] > 0.05 and info["heading_error"] > 0.05
    env.reset(seed=0)
    info = run(env, [[-0.2, 1.0]] * 25)[-1][4]
    assert info["lateral_deviation"] < -0.05 and info["heading_error"] < -0.05


def test_full_throttle_straight_ahead_makes_progress():
    env = make()
    env.reset(seed=0)
    steps = run(env, [[0.0, 1.0]] * 40)
    infos = [s[4] for s in steps]
    assert all(i["progress"] > 0 for i in infos)
    # 3 m/s^2 (max_acceleration) for 2 s.
    assert infos[-1]["speed"] == pytest.approx(6.0)
    assert infos[-1]["longitudinal_acceleration"] == pytest.approx(3.0)
    assert sum(i["progress"] for i in infos) == pytest.approx(sum(i["distance_travelled"] for i in infos))
    assert infos[-1]["reward_components"]["efficiency"] == pytest.approx(6.0 / 8.33)
    assert steps[-1][1] > 0
    # Full brake stops the ego and never reverses it.
    infos = [s[4] for s in run(env, [[0.0, -1.0]] * 20)]
    assert infos[-1]["speed"] == 0.0 and min(i["progress"] for i in infos) >= 0.0


def test_driving_into_the_road_edge_invades_the_lane_then_ends_off_road():
    env = make()
    env.reset(seed=0)
    steps = run(env, [[0.05, 0.6]] * 400)
    obs, reward, terminated, truncated, info = steps[-1]
    assert terminated and not truncated
    assert info["off_road"] and info["lateral_deviation"] > env.cfg.max_lateral_deviation
    invasions = [s[4]["lane_invasion"] for s in steps]
    assert sum(invasions) == 1  # counted on the step the footprint starts to cross the edge
    overlaps = np.array([s[4]["marking_overlap"] for s in steps])
    first = invasions.index(True)
    assert (overlaps[:first] == 0).all() and (overlaps[first:] > 0).all()  # over the marking from then on
    assert overlaps[-1] > overlaps[first]  # and further over it as the car drifts out
    assert info["reward_components"]["safety"] <= -20.0


@pytest.mark.parametrize("bound", [0.0, 0.3])
def test_a_marking_overlap_bound_ends_the_episode_once_the_footprint_is_that_far_over(bound):
    env = make(max_marking_overlap=bound)
    env.reset(seed=0)
    steps = run(env, [[0.05, 0.6]] * 400)
    obs, reward, terminated, truncated, info = steps[-1]
    overlaps = [s[4]["marking_overlap"] for s in steps]
    assert terminated and info["off_road"] and not truncated
    assert overlaps[-1] > bound and max(overlaps[:-1]) <= bound  # the first step past the bound ends it
    assert abs(info["lateral_deviation"]) < env.cfg.max_lateral_deviation  # the centre is still on the road
    assert info["lane_invasion"] == (bound == 0.0)  # at 0, the invasion's own step
    assert info["reward_components"]["safety"] <= -20.0  # paid as off road


def test_a_marking_bound_probability_ends_some_steps_past_the_bound_and_drives_on_from_others():
    def steps_over(seed):  # frames with the footprint past the bound, and whether the centre was on the road
        env = make(max_marking_overlap=0.0, marking_bound_probability=0.3)
        env.reset(seed=seed)
        steps = run(env, [[0.05, 0.6]] * 400)
        assert steps[-1][2] and steps[-1][4]["off_road"]
        return (sum(s[4]["marking_overlap"] > 0 for s in steps),
                abs(steps[-1][4]["lateral_deviation"]) < make().cfg.max_lateral_deviation)

    ends = [steps_over(seed) for seed in range(6)]
    assert max(k for k, _ in ends) > 1  # drove on past a step over the bound (certain ends: always 1)
    assert any(on_road for _, on_road in ends)  # and a draw, not the road's edge, ended one
    assert steps_over(3) == ends[3]  # the draws are the episode seed's


@pytest.mark.parametrize("in_eval", ["true", "false"])
def test_evaluation_episodes_end_at_the_footprint_bound_only_with_marking_bound_in_eval(compose, in_eval):
    from av_td3.config import validate
    from av_td3.envs.factory import make_env

    cfg = validate(compose(["env.image_height=36", "env.image_width=36", "scenario.npc_vehicles=0",
                            "env.max_marking_overlap=0", f"env.marking_bound_in_eval={in_eval}"]))
    ends = {}
    for role in ("train", "eval"):
        env = make_env(cfg, role)
        env.reset(seed=0)
        steps = run(env, [[0.05, 0.6]] * 400)
        env.close()
        ends[role] = [s[4]["lane_invasion"] for s in steps].index(True) == len(steps) - 1
        assert steps[-1][2] and steps[-1][4]["off_road"]
    assert ends["train"]  # the first invasion's step ends a training episode
    assert ends["eval"] == (in_eval == "true")  # false: evaluation drives on until the centre leaves the road


def test_driving_into_a_parked_car_is_a_collision():
    env = make()
    env.reset(seed=0)
    ahead = 15.0  # m along the route, centre to centre: a 10 m gap
    parked = Vehicle(env.road, env.route.point_at(ahead), env.route.start_yaw(), 0.0)
    env.road.vehicles.append(parked)
    steps = run(env, [[0.0, 1.0]] * 200)
    info = steps[-1][4]
    assert steps[-1][2] and info["collision"]
    first = steps[0][4]
    assert first["obstacle_distance"] == pytest.approx(ahead - first["progress"] - Vehicle.LENGTH, abs=1e-6)
    assert first["time_to_collision"] == pytest.approx(first["obstacle_distance"] / first["speed"])
    # Hit at ~7.7 m/s (3 m/s^2 over the 10 m gap): the middle collision grade, proximity and TTC penalties.
    assert 2.78 <= info["speed"] < 8.33
    assert info["reward_components"]["safety"] <= -25.0


def test_truncation_at_max_episode_steps():
    env = make(max_episode_steps=5)
    env.reset(seed=0)
    steps = run(env, [[0.0, 0.3]] * 10)
    assert len(steps) == 5
    assert [s[3] for s in steps] == [False] * 4 + [True]
    assert not any(s[2] for s in steps)


def test_pure_pursuit_on_the_waypoints_completes_the_route():
    env = make()
    obs, _ = env.reset(seed=0)
    total, invasions, bonuses = 0.0, 0, 0
    for _ in range(env.cfg.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(pure_pursuit(obs))
        total += reward
        invasions += info["lane_invasion"]
        bonuses += info["reward_components"]["progress"] > 50.0
        if terminated or truncated:
            break
    assert terminated and info["route_completed"] and info["is_success"]
    assert not info["collision"] and not info["off_road"] and invasions == 0
    assert info["reward_components"]["progress"] > 100.0 and bonuses == 1  # the goal bonus, once
    assert info["distance_to_goal"] <= env.cfg.goal_radius
    assert total > 300.0


def test_actuator_lag_is_a_first_order_response_to_the_pedal():
    tau, dt = 0.3, 0.05
    env = make(actuator_time_constant=tau)
    env.reset(seed=0)
    infos = [s[4] for s in run(env, [[0.0, 1.0]] * 40)]
    # a_k = 3 (1 - exp(-k dt / tau)): the exact step response of da/dt = (a_cmd - a) / tau.
    for k in (1, 6, 20):
        assert infos[k - 1]["longitudinal_acceleration"] == pytest.approx(3.0 * (1 - math.exp(-k * dt / tau)))
    jerks = [abs(i["longitudinal_jerk"]) for i in infos]
    assert max(jerks) == pytest.approx(3.0 * (1 - math.exp(-dt / tau)) / dt)  # 9.2, not 60 m/s^3
    # Braking to a stop leaves no stored deceleration: throttle afterwards accelerates at once.
    run(env, [[0.0, -1.0]] * 60)
    again = run(env, [[0.0, 1.0]])[0][4]
    assert again["speed"] > 0 and again["longitudinal_acceleration"] == pytest.approx(3 * (1 - math.exp(-dt / tau)))


def test_random_starts_spread_training_episodes_over_the_route_and_never_evaluation():
    cfg = HighwayEnvConfig(image_height=SIZE, image_width=SIZE, random_start=1.0, random_start_speed=8.0)
    train, evaluation = HighwayDrivingEnv(cfg, 20), HighwayDrivingEnv(cfg, 20, role="eval")
    starts = []
    for seed in range(12):
        obs, _ = train.reset(seed=seed)
        s0, v0 = train._s, train.ego.speed
        starts.append(s0)
        assert 0 <= v0 <= 8.0 and obs[VECTOR][0] == pytest.approx(v0 / 30.0)
        # On the route, heading along it, and no NPC within npc_min_distance of the ego's start.
        assert abs(obs[VECTOR][1]) < 1e-6 and abs(obs[VECTOR][2]) < 1e-6
        others = [train.route.project(v.position).s for v in train.road.vehicles if v is not train.ego]
        assert others and all(abs(s - s0) >= cfg.npc_min_distance - 0.5 for s in others)
        _, _, _, _, info = train.step(np.array([0.0, 0.0], dtype=np.float32))
        assert info["progress"] == pytest.approx(v0 * train.dt, abs=0.05)  # it moves off at its speed
    assert min(starts) < 60 and max(starts) > train.route.length - 60  # the whole route, the turn included
    for seed in range(3):
        evaluation.reset(seed=seed)
        assert evaluation._s == 0.0 and evaluation.ego.speed == 0.0
    half = HighwayDrivingEnv(HighwayEnvConfig(image_height=SIZE, image_width=SIZE, random_start=0.5), 0)
    at_start = sum(half.reset(seed=seed) is not None and half._s == 0.0 for seed in range(40))
    assert 8 < at_start < 32  # about half


def test_without_lag_the_acceleration_follows_the_pedal_within_the_step():
    env = make()
    env.reset(seed=0)
    infos = [s[4] for s in run(env, [[0.0, 1.0], [0.0, 0.2]])]
    assert [i["longitudinal_acceleration"] for i in infos] == pytest.approx([3.0, 0.6])


def test_observed_obstacle_features_match_the_measured_gap_and_ttc():
    env = make(observe_obstacle=True)
    obs, _ = env.reset(seed=0)
    assert obs[VECTOR].shape == (VECTOR_SIZE + 2,) and obs in env.observation_space
    np.testing.assert_array_equal(obs[VECTOR][-2:], [1.0, 0.0])  # nothing ahead
    parked = Vehicle(env.road, env.route.point_at(15.0), env.route.start_yaw(), 0.0)
    env.road.vehicles.append(parked)
    for obs, _, _, _, info in run(env, [[0.0, 1.0]] * 10):
        gap, closing = obs[VECTOR][-2:]
        assert gap == pytest.approx(info["obstacle_distance"] / env.cfg.obstacle_range)
        assert closing * 30.0 == pytest.approx(info["speed"], rel=1e-5)  # closing on a parked car
    # The first 53 floats are the reference's: the same with and without the features.
    accel = make(observe_obstacle=True, observe_acceleration=True)
    accel.reset(seed=0)
    steps = run(accel, [[0.0, 1.0], [0.0, -0.5]])
    assert [o[VECTOR].shape for o, *_ in steps] == [(VECTOR_SIZE + 3,)] * 2
    assert [o[VECTOR][-1] * 8.0 for o, *_ in steps] == pytest.approx(
        [i["longitudinal_acceleration"] for *_, i in steps], rel=1e-6)
    plain = make()
    plain_obs, _ = plain.reset(seed=0)
    np.testing.assert_array_equal(plain_obs[VECTOR], env.reset(seed=0)[0][VECTOR][:VECTOR_SIZE])

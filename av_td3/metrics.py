"""The evaluation metric suite (SPEC, "What the reference paper reports"), in one module.

Every figure comes from the per-step quantities every driving env reports in ``info``
(``contract.StepQuantities``), never from simulator objects, so the embedded simulator and CARLA are
scored alike. Episodes of envs without them (plain Gymnasium tasks) have return and length only.

Per episode (``EpisodeMetrics.result()``):

=========================  =========================================================================
return, length             sum of rewards; env frames (an action-repeat step counts each of its frames)
success                    1.0 if the route was completed (``route_completed`` on any step), else 0.0
crashed, off_road          1.0 if a step flagged ``collision`` / ``off_road`` (either ends the episode)
collisions, lane_invasions steps flagged ``collision`` / ``lane_invasion``
distance_m, sim_time_s     sum of ``distance_travelled``; sum of ``dt`` (simulated, not wall-clock)
collisions_per_km          collisions / (distance_m / 1000); NaN when nothing was driven
lane_invasions_per_km      likewise
ttc_mean_s, ttc_min_s      mean and min of ``time_to_collision`` over the steps where it is finite
                           (an obstacle ahead and closing); NaN when there is none
encounter                  1.0 if the episode met a slower vehicle: on some step an obstacle ahead (in
                           the ego's lane, within env.obstacle_range) was closing (a finite TTC)
avg_speed_kmh              distance_m / sim_time_s * 3.6
completion_time_s          sim_time_s of a successful episode; NaN otherwise
jerk_mean_mps3, _max_      mean and max of |d a_long / dt|, differenced from ``longitudinal_acceleration``
                           between consecutive steps (the signed longitudinal acceleration, not the
                           magnitude of the acceleration vector); the first step, whose predecessor is
                           the reset, has none
lat_accel_mean_mps2, _max_ mean and max of |``lateral_acceleration``|
lateral_offset_mean_m      mean of the signed ``lateral_deviation`` (+ right of the route's centre line):
                           where in the lane the policy holds the car (a policy that keeps 0.7 m to
                           one side touches that side's marking with a 2 m wide car in a 3.5 m lane)
lateral_offset_rms_m       root mean square of ``lateral_deviation``: how far from the centre line overall
over_marking_fraction      the fraction of frames with the footprint over a marking (``marking_overlap`` > 0):
                           lane_invasions counts crossings, so a car that rides a marking scores few of
                           them; this counts the time it spends there
=========================  =========================================================================

Per evaluation phase (``aggregate``): the SPEC tags ``mean_reward``, ``avg_episode_length``,
``success_rate``, ``avg_collisions``, ``avg_lane_invasions``; ``encounter_rate`` (the fraction of
episodes with an encounter); how the episodes that failed ended, as fractions of all episodes:
``crash_rate`` (a collision), ``off_road_rate`` (off road, no collision) and ``timeout_rate`` (neither:
truncated at env.max_episode_steps), which sum with ``success_rate`` to 1; the per-km rates as totals over the
phase's distance (a short crash-out does not outweigh a full route); every other figure as the mean over
the episodes where it is defined (e.g. ``ttc_min_s`` is the mean of the episodes' minima,
``completion_time_s`` the mean over successful episodes). A figure no episode defines is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from av_td3.envs.action_repeat import frames_of

MS_TO_KMH = 3.6
# The info keys that mark a driving env's step (contract.StepQuantities); one is enough to tell.
DRIVING_KEY = "distance_travelled"

# Episode figures averaged over the episodes that define them (not NaN) when a phase is aggregated.
EPISODE_MEANS = ("ttc_mean_s", "ttc_min_s", "avg_speed_kmh", "completion_time_s", "jerk_mean_mps3",
                 "jerk_max_mps3", "lat_accel_mean_mps2", "lat_accel_max_mps2", "lateral_offset_mean_m",
                 "lateral_offset_rms_m", "over_marking_fraction", "distance_m")


def per_km(count: float, distance_m: float) -> float:
    """Events per kilometre driven; NaN when nothing was driven (the rate is undefined)."""
    return count / (distance_m / 1000.0) if distance_m > 0 else math.nan


class EpisodeMetrics:
    """Accumulates one episode's steps: ``add(reward, info)`` per step, then ``result()``."""

    def __init__(self) -> None:
        self.total, self.length = 0.0, 0
        self.driving = False
        self.success = self.off_road = False
        self.collisions = self.lane_invasions = 0
        self.distance = self.sim_time = 0.0
        self.ttc: list[float] = []
        self.jerk: list[float] = []
        self.lat_accel: list[float] = []
        self.lateral: list[float] = []
        self.over_marking = 0
        self._prev_accel: float | None = None

    def add(self, reward: float, info: Mapping) -> None:
        frames = frames_of(info)  # an agent step of several env frames (action repeat): each counts
        if frames is not None:
            for frame_reward, frame_info in frames:
                self.add(frame_reward, frame_info)
            return
        self.total += float(reward)
        self.length += 1
        if DRIVING_KEY not in info:
            return
        self.driving = True
        self.success = self.success or bool(info["route_completed"])
        self.collisions += int(bool(info["collision"]))
        self.lane_invasions += int(bool(info["lane_invasion"]))
        self.off_road = self.off_road or bool(info["off_road"])
        dt = float(info["dt"])
        self.distance += float(info["distance_travelled"])
        self.sim_time += dt
        ttc = float(info["time_to_collision"])
        if math.isfinite(ttc):
            self.ttc.append(ttc)
        accel = float(info["longitudinal_acceleration"])
        if self._prev_accel is not None and dt > 0:
            self.jerk.append(abs(accel - self._prev_accel) / dt)
        self._prev_accel = accel
        self.lat_accel.append(abs(float(info["lateral_acceleration"])))
        self.lateral.append(float(info["lateral_deviation"]))
        self.over_marking += int(float(info["marking_overlap"]) > 0)

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {"return": self.total, "length": float(self.length)}
        if not self.driving:
            return out
        out |= {
            "success": float(self.success),
            "collisions": float(self.collisions),
            "crashed": float(self.collisions > 0),
            "off_road": float(self.off_road),
            "lane_invasions": float(self.lane_invasions),
            "distance_m": self.distance,
            "sim_time_s": self.sim_time,
            "collisions_per_km": per_km(self.collisions, self.distance),
            "lane_invasions_per_km": per_km(self.lane_invasions, self.distance),
            "ttc_mean_s": _mean(self.ttc),
            "ttc_min_s": min(self.ttc, default=math.nan),
            "encounter": float(bool(self.ttc)),
            "avg_speed_kmh": self.distance / self.sim_time * MS_TO_KMH if self.sim_time > 0 else math.nan,
            "completion_time_s": self.sim_time if self.success else math.nan,
            "jerk_mean_mps3": _mean(self.jerk),
            "jerk_max_mps3": max(self.jerk, default=math.nan),
            "lat_accel_mean_mps2": _mean(self.lat_accel),
            "lat_accel_max_mps2": max(self.lat_accel, default=math.nan),
            "lateral_offset_mean_m": _mean(self.lateral),
            "lateral_offset_rms_m": math.sqrt(_mean(np.square(self.lateral))),
            "over_marking_fraction": self.over_marking / len(self.lateral) if self.lateral else math.nan,
        }
        return out


def episode_metrics(rewards: Iterable[float], infos: Iterable[Mapping]) -> dict[str, float]:
    """One episode's figures from its rewards and infos, step by step."""
    acc = EpisodeMetrics()
    for reward, info in zip(rewards, infos, strict=True):
        acc.add(reward, info)
    return acc.result()


def aggregate(episodes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """An evaluation phase's figures from its episodes' (see the module docstring)."""
    if not episodes:
        raise ValueError("aggregate() needs at least one episode")
    out = {"mean_reward": float(np.mean([e["return"] for e in episodes])),
           "avg_episode_length": float(np.mean([e["length"] for e in episodes]))}
    if not all("success" in e for e in episodes):  # not a driving env (or a mix): return and length only
        return out
    distance = sum(e["distance_m"] for e in episodes)
    out |= {
        "success_rate": float(np.mean([e["success"] for e in episodes])),
        "avg_collisions": float(np.mean([e["collisions"] for e in episodes])),
        "avg_lane_invasions": float(np.mean([e["lane_invasions"] for e in episodes])),
        "collisions_per_km": per_km(sum(e["collisions"] for e in episodes), distance),
        "lane_invasions_per_km": per_km(sum(e["lane_invasions"] for e in episodes), distance),
        # Episodes that met a slower vehicle ahead in the ego's lane: how much of the phase tested traffic.
        "encounter_rate": float(np.mean([e["encounter"] for e in episodes])),
    }
    ends = [episode_end(e["success"], e["crashed"], e["off_road"]) for e in episodes]
    n = len(episodes)
    out |= {"crash_rate": ends.count("collision") / n, "off_road_rate": ends.count("off_road") / n,
            "timeout_rate": ends.count("timeout") / n}
    for key in EPISODE_MEANS:
        name = "avg_distance_m" if key == "distance_m" else key
        out[name] = _mean([e[key] for e in episodes if not math.isnan(e[key])])
    return out


def episode_end(success: bool, crashed: bool, off_road: bool) -> str:
    """How a driving episode ended: success (a route completed despite a bump counts as one), collision,
    off_road (without a collision; past env.max_marking_overlap too) or timeout (neither: truncated)."""
    return "success" if success else "collision" if crashed else "off_road" if off_road else "timeout"


def planar_kinematics(xy: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """Per-step speed, longitudinal / lateral acceleration and longitudinal jerk of a point moving
    through ``xy`` (N + 1 positions, one per ``dt``; step k moves from ``xy[k]`` to ``xy[k + 1]``), for
    an env that only knows positions. Frames as in ``route.py``: y to the right of x, so lateral
    acceleration is positive towards the right of the direction of travel.

    Velocities are backward differences; an acceleration is resolved along the mean of the two
    velocities it differences (which makes a constant-speed circle's acceleration purely lateral).
    Step 0's acceleration and steps 0-1's jerk have no predecessor and are 0."""
    xy = np.asarray(xy, dtype=np.float64)
    vel = np.diff(xy, axis=0) / dt  # (N, 2): step k's velocity
    speed = np.linalg.norm(vel, axis=1)
    acc = np.zeros_like(vel)
    acc[1:] = np.diff(vel, axis=0) / dt
    mid = vel.copy()
    mid[1:] = 0.5 * (vel[1:] + vel[:-1])
    norm = np.linalg.norm(mid, axis=1, keepdims=True)
    t = np.divide(mid, norm, out=np.zeros_like(mid), where=norm > 0)
    a_long = np.einsum("ij,ij->i", acc, t)
    a_lat = -acc[:, 0] * t[:, 1] + acc[:, 1] * t[:, 0]  # along the right unit vector (-t_y, t_x)
    jerk = np.zeros_like(a_long)
    jerk[2:] = np.diff(a_long[1:]) / dt
    return {"speed": speed, "longitudinal_acceleration": a_long, "lateral_acceleration": a_lat,
            "longitudinal_jerk": jerk, "distance_travelled": speed * dt}


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else math.nan

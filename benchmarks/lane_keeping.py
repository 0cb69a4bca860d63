"""How a trained driving policy keeps its lane, from its checkpoint: where it holds the car, whether its
steering answers the lane position, and where its lane invasions happen.

Drives ``--episodes`` evaluation episodes (the run's evaluation routes in turn, seeds 2000, 2001, ...;
with ``--final``, the run's final evaluation episodes: its seeds, trainer.final_eval_episodes of them)
with the run's final policy on the embedded simulator and prints:

- on each route's first ``--straight`` metres (every agent step above 4 m/s): the mean and standard
  deviation of the lateral offset (+ right of the centre line) and a least-squares fit of the steering
  command on the offset and the heading error (the gains and the variance they explain: a policy that
  steers by the lane has large gains and explains most of its steering);
- lane invasions per km, split by where the ego was: in a turn (the route's heading changes by more than
  1/150 rad per m within 5 m), behind traffic (an obstacle ahead within 15 m) or on a straight with no
  car close ahead, with the side of the centre line the ego was on (in a turn: the inside or the
  outside of it), and the ego's mean speed at those invasions against the route's target speed there
  (a policy that takes turns faster than the route is built for cuts them or runs wide);
- collisions, split the same way and by kind: into the car ahead in the ego's lane (the lane corridor's
  gap was under 2 m the frame before) or side-on, with the ego's offset from the centre line and
  whether its footprint was over a marking (a car that cuts a turn into the next lane meets its traffic),
  and where the car it met was in the ego's frame (ahead, beside or behind: a car behind ran into the
  ego, which the dashcam cannot see) with that car's speed;
- for an agent trained with an auxiliary head (agent.aux_weight), how well its CNN sees what the head
  predicts: the head's root-mean-square error and the targets' spread on every agent step, in the
  targets' units (lateral m, heading rad, gap m, closing m/s), and the least-squares slope of the
  prediction on the truth with their correlation (a slope well under 1 is a CNN that sees the car
  nearer the centre line, or the car ahead nearer, than it is).

    python benchmarks/lane_keeping.py multirun/drive_from_camera/camera/seed=0 [--episodes 12] [-- OVERRIDES]

``--classical`` drives the car-following classical controller (PID speed, Pure Pursuit on the route
waypoints, IDM on the gap: privileged inputs) on ``+experiment=drive_from_camera``'s evaluation episodes
instead of a run's policy, as ``bench_learning.py --contenders classical`` evaluates it:

    python benchmarks/lane_keeping.py --classical [--episodes 12 | --final] [-- OVERRIDES]
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

import numpy as np

from av_td3.evaluate_run import add_weights_option
from av_td3.helptext import plain

TURN_RATE, TURN_WINDOW, TRAFFIC_GAP, MOVING = 1 / 150, 5.0, 15.0, 4.0  # rad/m, m, m, m/s
REAR_END_GAP = 2.0  # m bumper to bumper to the car ahead in the lane, the frame before a collision


def main() -> None:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, nargs="?", help="a run directory (not with --classical)")
    p.add_argument("--classical", action="store_true", help="the car-following classical controller instead")
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--final", action="store_true", help="the final evaluation's episodes instead of --episodes")
    p.add_argument("--straight", type=float, default=55.0, help="metres of each route's start to fit on")
    add_weights_option(p)
    p.add_argument("overrides", nargs="*", help="config overrides after --, e.g. env.npc_vehicles=0")
    args = p.parse_intermixed_args()  # overrides after the options, as the docstring shows
    if args.classical and args.run_dir is not None:  # argparse fills the optional positional first
        args.overrides, args.run_dir = [str(args.run_dir), *args.overrides], None
    if (args.run_dir is None) != args.classical:
        p.error("give a run directory or --classical")

    import torch

    from av_td3.envs.action_repeat import frames_of
    from av_td3.envs.contract import PRIVILEGED_TARGETS, privileged_targets
    from av_td3.envs.route_file import eval_routes
    from av_td3.evaluate_run import load_policy, load_run_config
    from common import driven_policy, episode_seeds

    torch.set_num_threads(1)
    if args.classical:
        cfg, env, agent = classical(args.overrides)
    else:
        raw, _ = load_run_config(args.run_dir, args.overrides)
        cfg, env, agent, _ = load_policy(args.run_dir, raw)
    routes, sim = eval_routes(cfg.env), env.unwrapped
    policy = driven_policy(agent, args.weights)
    fit, invasions, metres, side = [], Counter(), Counter(), Counter()
    crashes = []  # (where, rear-end or side-on, lateral offset m, speed m/s, over a marking, other car) per collision
    speeds = {where: [] for where in ("straight", "turn", "traffic")}  # (ego, route target) per invasion
    head = getattr(getattr(agent, "critic", None), "aux_head", None)
    seen = []  # (predicted targets, true targets) per agent step, with an auxiliary head
    seeds = episode_seeds(cfg, args.final, args.episodes)
    for episode, seed in enumerate(seeds):
        options = {"route": routes[episode % len(routes)]} if routes else None
        obs, info = env.reset(seed=seed, options=options)
        route, driven, done, gap = sim.route, 0.0, False, math.inf
        while not done:
            lateral, heading = info.get("lateral_deviation", 0.0), info.get("heading_error", 0.0)
            if head is not None and "obstacle_distance" in info:
                with torch.no_grad():
                    image = torch.as_tensor(obs["image"], device=agent.device).unsqueeze(0)
                    predicted = head(agent.critic.encoder(image))[0].cpu().numpy()
                seen.append((predicted, privileged_targets(info, cfg.env.obstacle_range)))
            action = policy.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            frames = frames_of(info) or [(reward, info)]
            if driven < args.straight and info["speed"] > MOVING:
                fit.append((lateral, heading, float(action[0])))
            for _, frame in frames:
                driven += frame["distance_travelled"]
                s = route.project(np.asarray(sim.ego.position)).s
                change = math.remainder(route.yaw_at(min(s + TURN_WINDOW, route.length))
                                        - route.yaw_at(max(s - TURN_WINDOW, 0.0)), math.tau)  # + turning right
                where = "turn" if abs(change) / (2 * TURN_WINDOW) > TURN_RATE \
                    else "traffic" if frame["obstacle_distance"] < TRAFFIC_GAP else "straight"
                metres[where] += frame["distance_travelled"]
                if frame["lane_invasion"]:
                    invasions[where] += 1
                    right = frame["lateral_deviation"] > 0
                    side[where, ("inside" if right == (change > 0) else "outside") if where == "turn"
                         else "right" if right else "left"] += 1
                    target = np.interp(s, route.s, route.target_speed) if route.target_speed is not None else math.nan
                    speeds[where].append((frame["speed"], target))
                if frame["collision"]:
                    crashes.append((where, "rear-end" if gap < REAR_END_GAP else "side-on",
                                    frame["lateral_deviation"], frame["speed"], frame["marking_overlap"] > 0,
                                    other_car(sim)))
                gap = frame["obstacle_distance"]
    env.close()
    x = np.array(fit)
    design = np.c_[x[:, 0], x[:, 1], np.ones(len(x))]
    which = " (the final evaluation's)" if args.final else ""
    print(f"{args.run_dir or 'the classical controller'}: {len(seeds)} episodes{which}")
    head_line = (f"first {args.straight:.0f} m of each route ({len(x)} agent steps): lateral offset mean "
                 f"{x[:, 0].mean():+.2f} m, std {x[:, 0].std():.2f} m")
    if x[:, 0].std() < 0.01 or x[:, 1].std() < 1e-3:  # on the centre line throughout: nothing to fit on
        print(f"{head_line}; no steering fit (the offset and heading error hardly vary)")
    else:
        coef, *_ = np.linalg.lstsq(design, x[:, 2], rcond=None)
        explained = 1 - np.sum((x[:, 2] - design @ coef) ** 2) / np.sum((x[:, 2] - x[:, 2].mean()) ** 2)
        print(f"{head_line}; steering = {coef[0]:+.3f} * offset (m) {coef[1]:+.3f} * heading error (rad) "
              f"{coef[2]:+.3f}, explaining {explained:.0%} of its variance")
    for where in ("straight", "turn", "traffic"):
        km = metres[where] / 1000
        rate = invasions[where] / km if km else math.nan
        sides = ("inside", "outside") if where == "turn" else ("left", "right")
        at = (f"; at {np.mean([v for v, _ in speeds[where]]):.1f} m/s, the route's target "
              f"{np.mean([t for _, t in speeds[where]]):.1f}") if speeds[where] else ""
        print(f"  {where:8s} {invasions[where]:3d} lane invasions over {metres[where]:5.0f} m = {rate:5.1f} per km "
              f"({sides[0]} {side[where, sides[0]]}, {sides[1]} {side[where, sides[1]]}{at})")
    total = sum(metres.values()) / 1000
    print(f"  {len(crashes)} collisions over {total:.2f} km = {len(crashes) / total:.2f} per km" if total else "")
    for where, kind, lateral, speed, over, other in crashes:
        print(f"    {where:8s} {kind:8s} at {speed:4.1f} m/s, {lateral:+.2f} m off the centre line"
              f"{', over a marking' if over else ''}; {other}")
    if seen:
        from av_td3.envs.contract import privileged_units

        units = privileged_units(cfg.env.obstacle_range)
        predicted, true = (np.array(a) for a in zip(*seen))
        print(f"auxiliary head on {len(seen)} agent steps (root-mean-square error; the target's own spread):")
        for k, name in enumerate(PRIVILEGED_TARGETS):
            scale, unit = units[name]
            rmse = np.sqrt(np.mean((predicted[:, k] - true[:, k]) ** 2)) * scale
            spread = true[:, k].std()
            slope = np.cov(true[:, k], predicted[:, k], bias=True)[0, 1] / spread**2 if spread > 0 else math.nan
            corr = np.corrcoef(true[:, k], predicted[:, k])[0, 1] if spread > 0 else math.nan
            print(f"  {name:17s} {rmse:.3f} {unit} (std {spread * scale:.3f} {unit}); "
                  f"prediction = {slope:.2f} x truth, correlation {corr:.2f}")


def other_car(sim) -> str:
    """Where the car the ego collided with is, in the ego's frame, and its speed: the nearest other vehicle
    highway-env marks as crashed (it marks both parties), centre to centre. The simulator has moved on by
    at most the rest of the agent step's frames."""
    from av_td3.envs.route import to_vehicle_frame

    ego = sim.ego
    others = [v for v in sim.road.vehicles if v is not ego]
    if not others:
        return "no other car"
    hit = min([v for v in others if v.crashed] or others, key=lambda v: float(np.hypot(*(v.position - ego.position))))
    forward, right = to_vehicle_frame(hit.position[None], ego.position, float(ego.heading))[0].tolist()
    side = "ahead" if forward > ego.LENGTH / 2 else "behind" if forward < -ego.LENGTH / 2 else "beside"
    return f"the other car {side} ({forward:+.1f} m forward, {right:+.1f} m right) at {hit.speed:.1f} m/s"


def classical(overrides: list[str]):
    """(validated config, eval env, agent): the car-following classical controller on drive_from_camera's
    task, given the reference vector with the gap it steers and follows by (as bench_learning.py runs it)."""
    from bench_learning import classical_agent, compose, eval_env

    _, cfg = compose(["+experiment=drive_from_camera", "env.vector=reference", "env.observe_obstacle=true",
                      *overrides])
    env = eval_env(cfg)
    return cfg, env, classical_agent(cfg, env)


if __name__ == "__main__":
    main()

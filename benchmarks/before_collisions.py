"""What a trained driving policy does before each of its collisions, and what its critic would have done:
replays evaluation episodes with the run's final policy on the embedded simulator and, at each collision,
looks back ``--before`` agent steps.

Per collision and look-back step it prints the gap to the car ahead in the ego's lane (bumper to bumper,
m), the closing speed (m/s), the ego's speed, the actor's steering and throttle/brake command
(action[1]: +1 full throttle, -1 full brake) and the critic's Q1 over the throttle/brake axis (steering
held at the actor's): the throttle/brake value it rates highest. Then, per look-back step over all
collisions, how often the critic itself rated more braking than the actor commanded (its best command
below the actor's): a critic that prefers the throttle into the car ahead has not learned the collision's
cost there (a value error, not an actor that fails to follow its critic).

    python benchmarks/before_collisions.py multirun/drive_from_camera/camera/seed=0 --final [-- OVERRIDES]

``--final`` drives the run's final evaluation episodes (its seeds, trainer.final_eval_episodes of them);
otherwise ``--episodes`` episodes from seed 2000. TD3 runs only (the critic is read).
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from pathlib import Path

import numpy as np

from av_td3.evaluate_run import add_weights_option
from av_td3.helptext import plain

GRID = np.linspace(-1.0, 1.0, 9)  # throttle/brake commands the critic is asked about


def main() -> None:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a TD3 run directory (av-td3-train's output)")
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--final", action="store_true", help="the final evaluation's episodes instead of --episodes")
    p.add_argument("--before", type=int, nargs="+", default=[15, 8, 3],
                   help="agent steps before the collision to look at (default 15 8 3)")
    add_weights_option(p)
    p.add_argument("overrides", nargs="*", help="config overrides after --, e.g. env.max_marking_overlap=null")
    args = p.parse_intermixed_args()

    import torch

    from av_td3.agents.td3 import TD3Agent
    from av_td3.envs.action_repeat import frames_of
    from av_td3.envs.route_file import eval_routes
    from av_td3.evaluate_run import load_policy, load_run_config
    from common import driven_policy, episode_seeds

    torch.set_num_threads(1)
    raw, _ = load_run_config(args.run_dir, args.overrides)
    cfg, env, agent, _ = load_policy(args.run_dir, raw)
    if not isinstance(agent, TD3Agent):
        raise SystemExit(f"{args.run_dir}: a TD3 run is needed (its critic is read); this one drives with {type(agent).__name__}")
    policy = driven_policy(agent, args.weights)
    seeds = episode_seeds(cfg, args.final, args.episodes)
    routes, depth = eval_routes(cfg.env), max(args.before)

    def critic_q(obs, steer: float) -> np.ndarray:
        """Q1(obs, [steer, g]) for every g in GRID."""
        batch = {k: torch.as_tensor(v, device=agent.device).unsqueeze(0).expand(len(GRID), *np.shape(v))
                 for k, v in obs.items()}
        if "image" in batch:
            batch["image"] = agent.critic.encoder.pixels(batch["image"], channels_last=False)
        actions = torch.tensor([[steer, g] for g in GRID], dtype=torch.float32, device=agent.device)
        with torch.no_grad():
            feat = TD3Agent._encode(agent.critic.encoder, batch)
            return agent.critic.q1(feat, batch["vector"], actions).squeeze(1).cpu().numpy()

    collisions, brakes = 0, {back: [0, 0] for back in args.before}  # look-back -> [braking, seen]
    for episode, seed in enumerate(seeds):
        options = {"route": routes[episode % len(routes)]} if routes else None
        obs, info = env.reset(seed=seed, options=options)
        recent = deque(maxlen=depth)  # (obs, action, gap, closing speed, speed) per agent step
        done = False
        while not done:
            action = policy.act(obs)
            gap, ttc = info.get("obstacle_distance", math.inf), info.get("time_to_collision", math.inf)
            closing = gap / ttc if math.isfinite(gap) and math.isfinite(ttc) and ttc > 0 else 0.0
            recent.append((obs, action, gap, closing, info.get("speed", 0.0)))
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if not any(frame["collision"] for _, frame in (frames_of(info) or [(reward, info)])):
                continue
            collisions += 1
            route = Path(str(options["route"])).name if options else "the env's route"
            print(f"collision {collisions}: episode seed {seed}, {route}, at {info['speed']:.1f} m/s")
            print(f"  {'before':>6s} {'gap m':>6s} {'closing':>7s} {'speed':>5s} {'steer':>6s} {'throttle':>8s}"
                  f"  critic's Q1 over throttle/brake {GRID[0]:+.0f} .. {GRID[-1]:+.0f}, and its best")
            for back in sorted(args.before, reverse=True):
                if back > len(recent):
                    continue
                o, a, g, c, v = recent[-back]
                q = critic_q(o, float(a[0]))
                best = GRID[int(q.argmax())]
                brakes[back][0] += int(best < a[1])
                brakes[back][1] += 1
                print(f"  {back:6d} {g:6.1f} {c:7.1f} {v:5.1f} {a[0]:+6.2f} {a[1]:+8.2f}  "
                      + " ".join(f"{x:7.1f}" for x in q) + f"  best {best:+.2f}")
    env.close()
    if collisions:
        print(f"{collisions} collisions in {len(seeds)} episodes; the critic rated more braking than the actor's "
              f"command best, by agent steps before the collision: "
              + ", ".join(f"{back}: {n} of {seen}" for back, (n, seen) in sorted(brakes.items(), reverse=True)))
    else:
        print(f"no collisions in {len(seeds)} episodes")


if __name__ == "__main__":
    main()

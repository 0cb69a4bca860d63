"""The embedded simulator's speed per scenario, what its NPC level of detail changes, and its cameras.

    python benchmarks/bench_env.py                      # steps/s: light, medium, heavy (~2 min)
    python benchmarks/bench_env.py --cameras            # + the dashcam against the top-down camera
    python benchmarks/bench_env.py --fidelity 50        # + 50 classical-controller episodes per arm
    git worktree add /tmp/old bead606 && python benchmarks/bench_env.py --against-tree /tmp/old

Three arms, stepped in the same process round after round (so load on the machine hits them alike):
- ``highway-env``: highway-env's own all-pairs RoadNetwork and Road (``PlainHighwayDrivingEnv``): the
  env as it was before envs/traffic.py, the peer;
- ``inf``: av-td3's TrafficRoad with env.npc_lod_radius=inf: exact broad phases only (the same steps);
- ``lod``: the default radius (env.npc_lod_radius, HighwayEnvConfig's default); ``--radius 40 100``
  adds arms with other radii.
The ego is driven by the classical controller (PID + Pure Pursuit, agent=classical's settings), so it
moves along the route through the traffic as a driving agent does; episodes reset as in training.
Printed: the median steps/s per arm and the median of the per-round ratios against highway-env.

``--cameras``: at scenario light, (1) frames/s of each camera alone (the top-down view and the dashcam,
each rendering the policy's gray image from the same driven states), and (2) env steps/s with
env.camera=dashcam beside env.camera=topdown (and none), alternating rounds; the ratio is dashcam / topdown.

``--fidelity N``: N episodes from seeds 0..N-1 with inf and with the default radius. Within the radius
the simulation should behave as before, so the classical controller's success rate, collisions per km
and time-to-collision distribution should differ by no more than seed-to-seed noise. Each is printed
with a 95% bootstrap CI over episodes, and the paired (same seed) difference lod - inf with its CI.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time

import numpy as np
import torch

from av_td3.agents.classical import ClassicalAgent
from av_td3.agents.spec import AgentSpec
from av_td3.config import ClassicalConfig, ClippingConfig, HighwayEnvConfig
from av_td3.envs.highway import HighwayDrivingEnv, PlainHighwayDrivingEnv
from av_td3.helptext import plain
from av_td3.metrics import EpisodeMetrics
from common import machine

SCENARIOS = {"light": 20, "medium": 50, "heavy": 100}  # conf/scenario/*.yaml npc_vehicles


def classical_agent() -> ClassicalAgent:
    c = ClassicalConfig()
    spec = AgentSpec(None, 53, 2, torch.device("cpu"), ClippingConfig())
    return ClassicalAgent(spec, c.target_speed, c.kp, c.ki, c.kd, c.lookahead, c.wheelbase, c.dt)


def arms(npc: int, image: int, extra_radii: tuple[float, ...] = ()) -> dict[str, HighwayDrivingEnv]:
    default = HighwayEnvConfig.npc_lod_radius
    cfg = {r: HighwayEnvConfig(image_height=image, image_width=image, npc_lod_radius=r)
           for r in (math.inf, default, *extra_radii)}
    return {"highway-env": PlainHighwayDrivingEnv(cfg[math.inf], npc),
            "inf": HighwayDrivingEnv(cfg[math.inf], npc)} | {
        f"lod {r:g} m": HighwayDrivingEnv(cfg[r], npc) for r in dict.fromkeys((default, *extra_radii))}


class Driver:
    """One env driven by the classical controller, episode after episode (seeds 0, 1, ...)."""

    def __init__(self, env: HighwayDrivingEnv):
        self.env, self.agent, self.episode = env, classical_agent(), 0
        self.obs, _ = env.reset(seed=0)

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.obs, _, terminated, truncated, _ = self.env.step(self.agent.act(self.obs))
            if terminated or truncated:
                self.episode += 1
                self.agent.reset()
                self.obs, _ = self.env.reset(seed=self.episode)
        return steps / (time.perf_counter() - t0)


def speed(scenario: str, image: int, rounds: int, steps: int, extra_radii: tuple[float, ...]) -> None:
    drivers = {name: Driver(env) for name, env in arms(SCENARIOS[scenario], image, extra_radii).items()}
    for d in drivers.values():
        d.run(50)  # warm-up: first renders, caches
    rates: dict[str, list[float]] = {name: [] for name in drivers}
    for _ in range(rounds):
        for name, d in drivers.items():
            rates[name].append(d.run(steps))
    peer = np.array(rates["highway-env"])
    cells = []
    for name, r in rates.items():
        ratio = "" if name == "highway-env" else f" ({np.median(np.array(r) / peer):.2f}x)"
        cells.append(f"{name} {np.median(r):7.1f}{ratio}")
    print(f"{scenario:6s} ({SCENARIOS[scenario]:3d} NPCs x traffic_fraction): steps/s  " + "   ".join(cells))


def cameras(image: int, rounds: int, steps: int) -> None:
    """Frames/s of each camera alone, and env steps/s per env.camera (ratio against topdown)."""
    from av_td3.envs.camera import TopDownCamera
    from av_td3.envs.dashcam import DashCamera

    cfg = {c: HighwayEnvConfig(camera=c, image_height=image, image_width=image) for c in ("topdown", "dashcam", "none")}
    # (1) The cameras alone, on the states of one driven episode stream (the env itself renders nothing).
    driver = Driver(HighwayDrivingEnv(cfg["none"], SCENARIOS["light"]))
    env = driver.env
    cams = {"topdown": TopDownCamera(cfg["topdown"], env.network, env.route),
            "dashcam": DashCamera(cfg["dashcam"], env.network, env.route)}
    spent = {name: [] for name in cams}
    for _ in range(rounds):
        t = dict.fromkeys(cams, 0.0)
        for _ in range(steps):
            driver.run(1)
            for name, cam in cams.items():
                t0 = time.perf_counter()
                cam.frame(env.road.vehicles, env.ego)
                t[name] += time.perf_counter() - t0
        for name in cams:
            spent[name].append(steps / t[name])
    fps = {name: float(np.median(r)) for name, r in spent.items()}
    print(f"cameras alone, {image}x{image} gray (dashcam rendered at {cfg['dashcam'].camera_width}x"
          f"{cfg['dashcam'].camera_height}): topdown {fps['topdown']:7.0f} frames/s, dashcam "
          f"{fps['dashcam']:7.0f} frames/s ({fps['dashcam'] / fps['topdown']:.2f}x)")
    # (2) Whole env steps with each camera, alternating rounds.
    drivers = {c: Driver(HighwayDrivingEnv(cfg[c], SCENARIOS["light"])) for c in cfg}
    for d in drivers.values():
        d.run(50)
    rates: dict[str, list[float]] = {c: [] for c in drivers}
    for _ in range(rounds):
        for c, d in drivers.items():
            rates[c].append(d.run(steps))
    top = np.array(rates["topdown"])
    print(f"env steps/s at light, {image}x{image}: " + "   ".join(
        f"{c} {np.median(r):7.1f} ({np.median(np.array(r) / top):.2f}x)" for c, r in rates.items())
          + "  [ratio: against env.camera=topdown]")


# One arm's steps/s from another checkout (``--against-tree``): the same driver, that tree's env.
OTHER_TREE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from av_td3.agents.classical import ClassicalAgent
from av_td3.agents.spec import AgentSpec
from av_td3.config import ClassicalConfig, ClippingConfig, HighwayEnvConfig
from av_td3.envs.highway import HighwayDrivingEnv
npc, image, steps = (int(a) for a in sys.argv[2:5])
env = HighwayDrivingEnv(HighwayEnvConfig(image_height=image, image_width=image), npc)
c = ClassicalConfig()
agent = ClassicalAgent(AgentSpec(None, 53, 2, torch.device("cpu"), ClippingConfig()), c.target_speed, c.kp,
                       c.ki, c.kd, c.lookahead, c.wheelbase, c.dt)
obs, _ = env.reset(seed=0)
episode = 0
def run(n):
    global obs, episode
    for _ in range(n):
        obs, _, terminated, truncated, _ = env.step(agent.act(obs))
        if terminated or truncated:
            episode += 1
            agent.reset()
            obs, _ = env.reset(seed=episode)
run(50)
t0, c0 = time.perf_counter(), time.process_time()
run(steps)
print(steps / (time.perf_counter() - t0), steps / (time.process_time() - c0))
"""


def against_tree(tree: str, scenario: str, image: int, rounds: int, steps: int) -> None:
    """Rounds alternate: that tree's env (its defaults) and this one's (its defaults), each in a fresh
    process (the same start-up cost for both), ``steps`` steps after a 50-step warm-up. Rates per wall
    second and per CPU second of the process (the latter holds when other work shares the cores)."""
    here = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    rates: dict[str, list[tuple[float, float]]] = {tree: [], "this tree": []}
    for _ in range(rounds):
        for name, path in ((tree, tree), ("this tree", here)):
            out = subprocess.run([sys.executable, "-c", OTHER_TREE, path, str(SCENARIOS[scenario]), str(image),
                                  str(steps)], capture_output=True, text=True, check=True)
            rates[name].append(tuple(float(x) for x in out.stdout.split()[-2:]))
    for clock, c in (("wall", 0), ("cpu", 1)):
        old, new = (np.array([r[c] for r in rates[k]]) for k in (tree, "this tree"))
        ratios = new / old
        print(f"{scenario:6s} ({clock:4s}): {tree} {np.median(old):7.1f} steps/s, this tree {np.median(new):7.1f}"
              f" = {np.median(ratios):.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)})")


def episodes(env: HighwayDrivingEnv, n: int) -> list[dict]:
    agent, out = classical_agent(), []
    for seed in range(n):
        agent.reset()
        obs, _ = env.reset(seed=seed)
        m = EpisodeMetrics()
        while True:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs))
            m.add(reward, info)
            if terminated or truncated:
                break
        out.append({"success": float(m.success), "collisions": m.collisions, "km": m.distance / 1000,
                    "ttc": np.array(m.ttc)})
    return out


def bootstrap(stat, *samples: list, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """stat over the episodes and its 95% percentile-bootstrap CI (episodes resampled, paired when
    several samples are given: the same seeds)."""
    rng = np.random.default_rng(seed)
    n = len(samples[0])
    draws = [stat(*[[s[i] for i in idx] for s in samples]) for idx in rng.integers(0, n, (reps, n))]
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return stat(*samples), float(lo), float(hi)


STATS = {
    "success rate": lambda e: float(np.mean([x["success"] for x in e])),
    "collisions/km": lambda e: sum(x["collisions"] for x in e) / max(sum(x["km"] for x in e), 1e-9),
    "TTC p10 (s)": lambda e: _ttc_quantile(e, 10),
    "TTC median (s)": lambda e: _ttc_quantile(e, 50),
    "steps TTC < 2 s": lambda e: _ttc_below(e, 2.0),
}


def _ttc_quantile(e: list[dict], q: float) -> float:
    ttc = np.concatenate([x["ttc"] for x in e])
    return float(np.percentile(ttc, q)) if ttc.size else math.nan


def _ttc_below(e: list[dict], t: float) -> float:
    ttc = np.concatenate([x["ttc"] for x in e])
    return float(np.mean(ttc < t)) if ttc.size else math.nan


def fidelity(scenario: str, image: int, n: int, radius: float) -> None:
    envs = arms(SCENARIOS[scenario], image, (radius,))
    name = f"lod {radius:g} m"
    t0 = time.perf_counter()
    full, lod = episodes(envs["inf"], n), episodes(envs[name], n)
    print(f"\n{scenario}: the classical controller, {n} episodes (seeds 0..{n - 1}) per arm "
          f"({time.perf_counter() - t0:.0f} s); 95% bootstrap CIs over episodes")
    print(f"  {'':16s} {'inf':>24s} {name:>24s} {'paired difference':>26s}")
    for label, stat in STATS.items():
        a, b = bootstrap(stat, full), bootstrap(stat, lod)
        d = bootstrap(lambda x, y: stat(y) - stat(x), full, lod)
        within = "within noise" if d[1] <= 1e-9 and d[2] >= -1e-9 else "DIFFERS"
        print(f"  {label:16s} {a[0]:8.3f} [{a[1]:6.3f}, {a[2]:6.3f}] {b[0]:8.3f} [{b[1]:6.3f}, {b[2]:6.3f}] "
              f"{d[0]:+8.3f} [{d[1]:+6.3f}, {d[2]:+6.3f}]  {within}")


def main() -> None:
    ap = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--image", type=int, default=84, help="image side (SPEC: 84)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300, help="steps per arm per round")
    ap.add_argument("--radius", type=float, nargs="*", default=[], metavar="M",
                    help="more npc_lod_radius arms for the speed table (the default radius is always in)")
    ap.add_argument("--against-tree", metavar="DIR",
                    help="also time the env of another checkout (git worktree add /tmp/old REV) against this "
                         "one, each with its defaults, alternating fresh processes")
    ap.add_argument("--cameras", action="store_true", help="time the dashcam against the top-down camera")
    ap.add_argument("--fidelity", type=int, default=0, metavar="N", help="episodes per arm (0: skip)")
    ap.add_argument("--fidelity-radius", type=float, default=HighwayEnvConfig.npc_lod_radius, metavar="M",
                    help="the radius the fidelity episodes compare with inf (default: the config's)")
    ap.add_argument("--fidelity-scenarios", nargs="+", default=["light", "heavy"], choices=list(SCENARIOS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine(1)}")
    print(f"image {a.image}x{a.image}, {a.rounds} rounds x {a.steps} steps per arm; ratio: median of "
          f"per-round ratios against highway-env's Road")
    for scenario in a.scenarios:
        speed(scenario, a.image, a.rounds, a.steps, tuple(a.radius))
    if a.cameras:
        print()
        cameras(a.image, a.rounds, a.steps)
    if a.against_tree:
        print(f"\nagainst {a.against_tree}, {a.rounds} rounds x {a.steps} steps, fresh processes:")
        for scenario in a.scenarios:
            against_tree(a.against_tree, scenario, a.image, a.rounds, a.steps)
    if a.fidelity:
        for scenario in a.fidelity_scenarios:
            fidelity(scenario, a.image, a.fidelity, a.fidelity_radius)


if __name__ == "__main__":
    main()

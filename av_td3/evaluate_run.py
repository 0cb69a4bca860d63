"""``av-td3 evaluate RUN_DIR``: a trained policy on routes, scenarios and seeds of your choice, with the
trainer's metric suite (av_td3/metrics.py) and one row per route.

    av-td3 evaluate RUN                          # the run's evaluation routes, 20 episodes
    av-td3 evaluate RUN --routes test            # a split of the run's env.route_splits
    av-td3 evaluate RUN --route my_road.csv      # route files from anywhere on disk (several allowed)
    av-td3 evaluate RUN -- scenario=heavy env.npc_lead_in=60    # overrides of the run's config
    av-td3 evaluate RUN --routes test --freeze image             # what it drives with the camera held still
    av-td3 evaluate RUN --weights trained        # the last update's weights, where the run averages them

It loads RUN/.hydra/config.yaml (the run's composed config, overrides applied on top; a setting added
since, whose default does not do what the run did, takes the value the run ran with: config/saved.py) and
RUN/checkpoint.pt (the policy as the run left it), and runs the deterministic policy for --episodes
episodes, spread evenly over the routes, from the seeds the run's own evaluations use. It prints one row
per route and writes evaluate.json (figures per route and over all episodes) to --out (default RUN).
``--freeze image`` (or ``vector``) is a probe of which input the trained policy drives by: that input is
held at its value from the episode's start for the whole episode (an image the policy has seen, so the
probe removes the information, not the input's range); it writes evaluate_frozen_image.json instead.
``--weights trained`` or ``averaged`` picks the weights of a run that keeps a moving average of its
policy's (agent.policy_average; its own evaluations drive the average), so both can be scored on the same
run; it writes evaluate_trained_weights.json (or ..._averaged_weights.json).
Exit 0 on success; 2, with one line, for a missing run or checkpoint, a bad route file or a bad override.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from av_td3.helptext import missing_paths, plain
from av_td3.rundir import CHECKPOINT, CONFIG
from av_td3.jsonsafe import jsonable

# The observation's keys (envs/contract.py IMAGE, VECTOR), spelled here so that building the CLI's parser
# imports no env code; --freeze checks the key against the run's observation space.
FREEZABLE = ("image", "vector")
WEIGHTS = ("trained", "averaged")
COLUMNS = (("success_rate", "success", "{:.0%}"), ("crash_rate", "crashed", "{:.0%}"),
           ("off_road_rate", "off road", "{:.0%}"), ("timeout_rate", "timed out", "{:.0%}"),
           ("collisions_per_km", "coll/km", "{:.2f}"), ("mean_reward", "return", "{:.0f}"),
           ("lane_invasions_per_km", "inv/km", "{:.2f}"), ("lat_accel_max_mps2", "peak lat m/s2", "{:.1f}"),
           ("lateral_offset_mean_m", "offset m", "{:+.2f}"), ("over_marking_fraction", "on marking", "{:.0%}"),
           ("encounter_rate", "met traffic", "{:.0%}"), ("avg_speed_kmh", "km/h", "{:.1f}"))


class EvaluateError(Exception):
    """A problem with the command's input, reported as one line (exit 2)."""


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run's policy on routes of your choice",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory (av-td3-train's output)")
    p.add_argument("--episodes", type=int, default=20, help="episodes in all, spread over the routes (20)")
    p.add_argument("--route", action="append", default=[], metavar="FILE",
                   help="a route CSV (x,y,target_speed); repeat for several")
    p.add_argument("--routes", metavar="SPLIT", help="a split of the run's env.route_splits (train, test, ...)")
    p.add_argument("--video", action="store_true", help="write each route's first episode as a GIF")
    p.add_argument("--out", type=Path, help="where evaluate.json (and videos) go (default: RUN_DIR)")
    p.add_argument("--freeze", choices=FREEZABLE, help="hold this input at its value from the episode's start")
    add_weights_option(p)
    p.set_defaults(passthrough=[])


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """--weights: which weights of a run that averages its policy's to drive (also the run-inspecting
    benchmark scripts' option)."""
    parser.add_argument("--weights", choices=WEIGHTS,
                        help="the last update's weights or their moving average (agent.policy_average); "
                             "default: what the run's own evaluations drove")


def run(args) -> int:
    try:
        result = evaluate_run(args.run_dir, args.episodes, args.route, args.routes, args.video,
                              args.out or args.run_dir, args.passthrough, args.freeze, args.weights)
    except EvaluateError as e:
        print(f"av-td3 evaluate: {e}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"wrote {result['path']}")
    return 0


def load_run_config(run_dir: Path, overrides: list[str]):
    """(the raw config, validated) of a run directory, with dotlist overrides merged on top."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from av_td3.config import ConfigError, validate
    from av_td3.config.saved import earlier_values
    from av_td3.config.root import SCHEMAS, Config

    path = run_dir / CONFIG
    if missing_paths([run_dir]):
        raise EvaluateError(f"no run directory at {run_dir}")
    if not path.is_file():
        raise EvaluateError(f"{run_dir} is not a run directory (no .hydra/config.yaml)")
    try:
        loaded = OmegaConf.load(path)
        for key, value in earlier_values(lambda k: OmegaConf.select(loaded, k) is not None).items():
            OmegaConf.update(loaded, key, value)  # what the run ran with, not today's default
        schema = OmegaConf.structured(Config)
        by_target = {cls._target_: cls for cls in SCHEMAS.values()}
        for group in ("agent", "env"):  # each group's schema, found by the class the run built
            target = OmegaConf.select(loaded, f"{group}._target_")
            if target not in by_target:
                raise EvaluateError(f"{path}: {group}._target_ {target!r} names no known {group}")
            schema[group] = OmegaConf.structured(by_target[target])
        raw = OmegaConf.merge(schema, loaded, OmegaConf.from_dotlist(overrides))
        return raw, validate(raw)
    except EvaluateError:
        raise
    except (ConfigError, OmegaConfBaseException, ValueError) as e:
        raise EvaluateError(f"config: {' '.join(str(e).split())}") from None


def evaluate_run(run_dir: Path, episodes: int, route_files: list[str], split: str | None, video: bool,
                 out: Path, overrides: list[str], freeze: str | None = None, weights: str | None = None) -> dict:
    if episodes < 1:
        raise EvaluateError(f"--episodes must be >= 1, got {episodes}")
    raw, cfg = load_run_config(run_dir, overrides)
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        raise EvaluateError(f"{run_dir} has no checkpoint.pt (the run has not reached its first checkpoint)")
    routes = _routes(raw, cfg, route_files, split)
    import torch

    from av_td3 import video as videos
    from av_td3.evaluation import FrozenInput, driven, evaluate_by_route
    from av_td3.trainer import eval_seeds

    cfg, env, agent, state = load_policy(run_dir, raw, render=video)
    try:
        agent = driven(agent, weights)
    except ValueError as e:
        env.close()
        raise EvaluateError(f"--weights {weights}: {e}") from None
    if freeze is not None:
        if freeze not in env.observation_space.spaces:
            env.close()
            raise EvaluateError(f"--freeze {freeze}: the run's policy observes no {freeze}")
        env = FrozenInput(env, freeze)
    try:
        seeds = eval_seeds(cfg.seed, episodes)
        with torch.no_grad():
            overall, by_route = evaluate_by_route(agent, env, seeds, routes=routes)
            if video:
                out.mkdir(parents=True, exist_ok=True)
                for name in routes or [""]:
                    recorder = videos.EpisodeFrames()
                    evaluate_by_route(agent, env, seeds[:1], recorder, routes=[name] if routes else None)
                    gif = out / videos.VIDEOS / f"evaluate_{Path(name).stem or 'route'}.gif"
                    gif.parent.mkdir(parents=True, exist_ok=True)
                    if recorder.frames:
                        gif.write_bytes(videos.to_gif(recorder.frames, 20 / cfg.trainer.action_repeat))
        per_route = by_route or {cfg.env.route_file if hasattr(cfg.env, "route_file") else "": overall}
    finally:
        env.close()
    result = {"run": str(run_dir), "step": int(state.get("step", 0)), "episodes": episodes, "seeds": seeds,
              "overrides": overrides, "frozen": freeze, "weights": weights, "routes": per_route, "overall": overall}
    out.mkdir(parents=True, exist_ok=True)
    path = out / result_name(freeze, weights)
    path.write_text(json.dumps(jsonable(result), indent=2))
    result["path"] = path
    return result


def result_name(freeze: str | None, weights: str | None) -> str:
    """evaluate.json, or evaluate_frozen_image.json, evaluate_trained_weights.json, ... for the probes."""
    return "evaluate" + (f"_frozen_{freeze}" if freeze else "") + (f"_{weights}_weights" if weights else "") + ".json"


def load_policy(run_dir: Path, raw, render: bool = False):
    """(validated config, its eval env, the agent with the run's checkpoint loaded, the checkpoint's
    state) for ``raw``, a run's config (``load_run_config``). The caller closes the env; a route file or
    checkpoint that cannot be read is an EvaluateError."""
    from av_td3 import checkpoint
    from av_td3.agents.build import build_agent
    from av_td3.config import validate
    from av_td3.envs.factory import build_run_env
    from av_td3.envs.route_file import RouteFileError
    from av_td3.trainer import resolve_device

    cfg = validate(raw)
    try:
        env = build_run_env(cfg, "eval", render=render)
    except RouteFileError as e:
        raise EvaluateError(str(e)) from None
    try:
        try:
            agent = build_agent(raw, cfg, env.observation_space, env.action_space, resolve_device(cfg.device))
        except ValueError as e:  # e.g. an image too small for the CNN
            raise EvaluateError(f"config: {' '.join(str(e).split())}") from None
        ckpt = run_dir / CHECKPOINT
        try:
            state = checkpoint.load(ckpt)
        except Exception as e:  # noqa: BLE001 - a corrupt checkpoint is the user's input, reported in one line
            raise EvaluateError(f"{ckpt}: cannot load it ({type(e).__name__}: {e})") from None
        if hasattr(agent, "load_state_dict"):
            try:
                agent.load_state_dict(state["agent"])
            except (RuntimeError, KeyError) as e:  # an override changed the networks' shapes
                first = str(e).strip().splitlines()
                detail = " ".join(first[1].split()) if len(first) > 1 else " ".join(str(e).split())
                raise EvaluateError(f"{ckpt}: the checkpoint does not fit the networks this config builds "
                                    f"(an override that changes the observation or the networks?): {detail}") from None
    except BaseException:
        env.close()
        raise
    return cfg, env, agent, state


def _routes(raw, cfg, route_files: list[str], split: str | None) -> list[str] | None:
    """The route list, set into ``raw`` so the eval env drives exactly these (as the split ``evaluate``)."""
    from av_td3.config import HighwayEnvConfig
    from av_td3.envs.route_file import RouteFileError, eval_routes, read_points, resolve

    if route_files and split:
        raise EvaluateError("give --route FILE or --routes SPLIT, not both")
    if not isinstance(cfg.env, HighwayEnvConfig):
        if split or len(route_files) > 1:
            raise EvaluateError("only the embedded simulator (env=highway) drives route splits or several routes")
        if route_files:
            raw.env.route_file = str(resolve(route_files[0]))
        return None
    if split:
        if split not in cfg.env.route_splits:
            raise EvaluateError(f"--routes {split}: the run's env.route_splits has {', '.join(cfg.env.route_splits)}")
        names = list(cfg.env.route_splits[split])
    elif route_files:
        names = [str(resolve(f)) for f in route_files]
    else:
        return eval_routes(cfg.env)
    for name in names:
        try:
            read_points(name)
        except RouteFileError as e:
            raise EvaluateError(str(e)) from None
    raw.env.route_splits["evaluate"] = names
    raw.env.eval_routes = "evaluate"
    raw.env.route_file = ""
    return names


def table(result: dict) -> str:
    rows = [("route", *(c[1] for c in COLUMNS))]
    for name, s in result["routes"].items():
        rows.append((Path(name).name or "(built-in road)", *(_fmt(s.get(k), f) for k, _, f in COLUMNS)))
    if len(result["routes"]) > 1:
        rows.append(("all", *(_fmt(result["overall"].get(k), f) for k, _, f in COLUMNS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    head = f"{result['run']} at step {result['step']}: {result['episodes']} episodes"
    if result.get("frozen"):
        head += f", the {result['frozen']} held at the episode's start"
    return "\n".join([head, *lines])


def _fmt(value, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)

"""Every combination of the four groups composes and validates; bad input names the key."""

import itertools
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from av_td3.config import ConfigError, validate
from conftest import options

GROUPS = ("agent", "clipping", "env", "scenario")


def test_every_combination_composes_and_validates(compose):
    combos = list(itertools.product(*(options(g) for g in GROUPS)))
    assert len(combos) >= 3 * 5 * 2 * 3
    for combo in combos:
        overrides = [f"{g}={o}" for g, o in zip(GROUPS, combo)]
        if "env=gym" in overrides and "agent=classical" in overrides:
            with pytest.raises(ConfigError, match="driving env"):
                validate(compose(overrides))
            continue
        cfg = validate(compose(overrides))
        assert cfg.agent is not None and cfg.env is not None, overrides


@pytest.mark.parametrize("env", options("env"))
@pytest.mark.parametrize("agent", options("agent"))
def test_smoke_size_goes_with_every_env_and_agent(compose, env, agent):
    """size=smoke shrinks each part where it has something to shrink (conf/size/env, conf/size/agent)."""
    overrides = [f"env={env}", f"agent={agent}", "size=smoke"]
    if env == "gym" and agent == "classical":
        pytest.skip("the classical controller needs a driving env")
    cfg = validate(compose(overrides))
    assert cfg.trainer.total_steps == 600
    if env != "gym":
        assert (cfg.env.image_height, cfg.env.max_episode_steps) == (36, 150)
    if agent != "classical":
        assert (list(cfg.agent.cnn_channels), cfg.agent.batch_size) == ([8, 16, 16], 32)


def test_clipping_options_carry_the_reference_limits(compose):
    ref = validate(compose(["clipping=reference"])).clipping
    assert (ref.actor.mode, ref.actor.max_norm, ref.critic.max_norm) == ("norm", 1.0, 10.0)
    loose = validate(compose(["clipping=loose"])).clipping
    assert (loose.actor.max_norm, loose.critic.max_norm) == (10.0, 100.0)
    assert validate(compose(["clipping=actor_only"])).clipping.critic.mode == "none"
    assert validate(compose(["clipping=critic_only"])).clipping.actor.mode == "none"
    assert validate(compose([])).clipping.actor.mode == "none"  # standard TD3 by default
    # At smoke scale the limits are scaled to the smoke networks' gradients, so that they bite.
    smoke = validate(compose(["size=smoke", "clipping=reference"])).clipping
    assert (smoke.actor.max_norm, smoke.critic.max_norm) == (0.025, 0.25)
    assert validate(compose(["size=smoke", "clipping=critic_only"])).clipping.actor.mode == "none"
    assert validate(compose(["size=smoke", "clipping=none"])).clipping.critic.mode == "none"
    # At the drive scale the limits stay the reference's; only the explosion alerts move above the
    # healthy norms of learning runs (actor <= 161, critic <= 9.6e4), every clip_arm of actor_clipping.
    for arm in options("clip_arm"):
        c = validate(compose(["+experiment=actor_clipping", f"clip_arm={arm}"])).clipping
        for net, healthy in (("actor", 161.0), ("critic", 9.6e4)):
            part = getattr(c, net)
            assert part.mode == "none" or part.alert_threshold("warning") > 2 * healthy, (arm, net)
    drive = validate(compose(["size=drive", "clipping=reference"])).clipping
    assert (drive.actor.max_norm, drive.critic.max_norm) == (1.0, 10.0)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_at_smoke_scale(compose, experiment):
    cfg = compose([f"+experiment={experiment}", "size=smoke"], return_hydra_config=True)
    assert cfg.trainer.total_steps <= 1000
    params = cfg.hydra.sweeper.get("params") or {}
    assert experiment == "smoke" or params, f"{experiment} declares no sweep"


def test_scenarios_set_npc_counts(compose):
    counts = {s: validate(compose([f"scenario={s}"])).scenario.npc_vehicles for s in options("scenario")}
    assert counts == {"light": 20, "medium": 50, "heavy": 100}


@pytest.mark.parametrize("override, key", [
    (["agent.bogus=1"], "bogus"),
    (["agent.batch_size=abc"], "agent.batch_size"),
    (["trainer.nope=3"], "nope"),
])
def test_unknown_keys_and_wrong_types_fail_at_composition(compose, override, key):
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose(override)
    assert key in str(e.value)


@pytest.mark.parametrize("override, key", [
    (["agent.batch_size=-1"], "agent.batch_size"),
    (["trainer.learning_starts=2000000"], "trainer.learning_starts"),
    (["agent.gamma=1.5"], "agent.gamma"),
    (["agent.precision=float16"], "agent.precision"),
    (["agent.smoothness_pair=next"], "agent.smoothness_pair"),
    (["agent.aux_weight=-1"], "agent.aux_weight"),
    (["agent.policy_average=1"], "agent.policy_average"),
    (["agent.aux_weight=1", "env.camera=none"], "agent.aux_weight"),
    (["clipping=reference", "clipping.actor.max_norm=-1"], "clipping.actor.max_norm"),
    (["clipping.critic.max_norm=5"], "clipping.critic"),  # a limit with mode none would be ignored
    (["env.frame_stack=0"], "env.frame_stack"),
    (["env.frame_stride=0"], "env.frame_stride"),
    (["env.marking_geometry=straight"], "env.marking_geometry"),
    (["env.max_marking_overlap=-0.1"], "env.max_marking_overlap"),
    (["env.marking_bound_probability=0"], "env.marking_bound_probability"),
    (["env.marking_bound_probability=1.5"], "env.marking_bound_probability"),
    (["scenario.npc_vehicles=-3"], "scenario.npc_vehicles"),
])
def test_impossible_values_name_the_key(compose, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose(override))


def test_entrypoint_rejects_unknown_key_before_any_work(tmp_path):
    r = subprocess.run([sys.executable, "-m", "av_td3.train", "agent.bogus=1",
                        f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "bogus" in r.stderr
    assert not list((tmp_path / "run").glob("events.out.tfevents.*")) and not (tmp_path / "run" / "tb").exists()


def test_entrypoint_rejects_impossible_value_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "av_td3.train", "trainer.learning_starts=5",
                        "trainer.total_steps=5", f"hydra.run.dir={tmp_path}/run"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "trainer.learning_starts" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # a rejected config leaves no run directory to trip over


@pytest.mark.parametrize("bad", ["agent.gamma=1.5", "device=gpu", "+agent.bogus=1"])
def test_rejected_configs_leave_nothing_behind(tmp_path, bad):
    r = subprocess.run([sys.executable, "-m", "av_td3.train", bad, f"hydra.run.dir={tmp_path}/run"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid config" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_cfg_job_prints_the_composed_config():
    r = subprocess.run([sys.executable, "-m", "av_td3.train", "--cfg", "job", "clipping=reference"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "max_norm: 1.0" in r.stdout and "npc_vehicles: 20" in r.stdout


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "JoblibLauncher"), ("local", "JoblibLauncher"), ("submitit_local", "LocalLauncher"),
    ("submitit_slurm", "SlurmLauncher"), ("slurm", "SlurmLauncher"), ("ray", "RayLauncher"),
])
def test_launchers_compose(compose, launcher, target):
    if launcher == "ray":
        pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the [ray] extra is not installed")
    cfg = compose(["+experiment=clipping_ablation", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":  # the preset: preemption requeues and the run resumes from its checkpoint
        assert cfg.hydra.launcher.max_num_timeout > 0 and cfg.hydra.launcher.gpus_per_node == 1


def test_reference_experiment_is_spec_and_learn_to_drive_changes_only_levers(compose):
    ref = validate(compose(["+experiment=reference"]))
    assert (ref.clipping.actor.max_norm, ref.clipping.critic.max_norm, ref.agent.weight_decay) == (1.0, 10.0, 1e-4)
    assert (ref.exploration.process, ref.exploration.std, ref.exploration.warmup) == ("gaussian", 0.1, "uniform")
    assert (ref.env.actuator_time_constant, ref.env.observe_obstacle, ref.agent.saturation_penalty) == (0, False, 0)
    assert (ref.env.image_height, ref.agent.feature_dim, ref.trainer.total_steps) == (84, 512, 1_000_000)
    assert (ref.agent.n_step, ref.trainer.action_repeat, ref.agent.layer_norm) == (1, 1, False)
    assert ref.env.random_start == 0
    drive = validate(compose(["+experiment=learn_to_drive"]))
    assert (drive.env.actuator_time_constant, drive.env.observe_obstacle) == (0.3, True)
    assert drive.agent.saturation_penalty > 0 and drive.env.image_height == 36
    assert drive.env.max_episode_steps == 1000 and drive.scenario.npc_vehicles == 20  # SPEC's task


LEVERS = {
    "lag": {("env", "actuator_time_constant")},
    "observation": {("env", "observe_obstacle"), ("env", "observe_acceleration")},
    "saturation": {("agent", "saturation_penalty")},
    "exploration": {("exploration", k) for k in ("process", "std", "action_scale", "warmup")},
    "temporal": {("trainer", "action_repeat"), ("agent", "n_step")},
    "start": {("env", "random_start"), ("env", "random_start_speed")},
    "augmentation": {("agent", "augmentation")},
}


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_each_ablation_arm_is_the_reference_plus_one_lever(compose, lever):
    def keys(overrides):
        cfg = compose(["+experiment=learn_to_drive_ablation", *overrides])
        return {(g, k): v for g in ("env", "agent", "exploration", "trainer")
                for k, v in OmegaConf.to_container(cfg[g]).items()}

    base, arm = keys([]), keys([f"levers={lever}"])
    assert {k for k in base if base[k] != arm[k]} == LEVERS[lever]
    drive = keys(["levers=all"])  # all of them: the union of every arm's changes
    assert {k for k in base if base[k] != drive[k]} == set().union(*LEVERS.values())
    assert all(drive[k] == arm[k] for k in LEVERS[lever])


def test_plus_key_unknown_to_the_schema_is_rejected_before_any_work(compose):
    with pytest.raises(ConfigError, match="full_key: agent.bogus"):
        validate(compose(["+agent.bogus=1"]))
    with pytest.raises(ConfigError, match="full_key: exploration.nope"):
        validate(compose(["+exploration.nope=1"]))


def test_default_threads_never_exceed_the_idle_cores(monkeypatch):
    import os

    from av_td3 import train

    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))  # one other CPU-bound process
    assert train.idle_cores(2) == 1 and train.idle_cores(8) == 7
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # overloaded: still one thread
    assert train.idle_cores(2) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert train.idle_cores(2) == 2


def flat_config(cfg) -> dict:
    """Every leaf of a composed config by its dotted key."""
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            walk(v, f"{prefix}{k}.") if isinstance(v, dict) else out.__setitem__(f"{prefix}{k}", v)
    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def test_lane_bound_experiment_is_drive_from_camera_and_its_three_settings(compose):
    """What drive_from_camera_lane_bound changes: the camera's field of view, the training bound and the
    mid-speed collision penalty (SPEC's -25 stays the default); evaluation keeps the task's own ends."""
    base = flat_config(compose(["+experiment=drive_from_camera"]))
    raw = compose(["+experiment=drive_from_camera_lane_bound"])
    validate(raw)
    bound = flat_config(raw)
    changed = {k: bound[k] for k in base if base[k] != bound[k] and not k.startswith("hydra.")}
    assert changed == {"env.camera_fov": 120.0, "env.max_marking_overlap": 0.0, "env.marking_bound_in_eval": False,
                       "env.reward.collision_penalty_mid": -100.0}
    assert base["env.reward.collision_penalty_mid"] == flat_config(compose([]))["env.reward.collision_penalty_mid"] == -25.0


def test_each_leave_one_out_arm_sets_back_only_its_lever(compose):
    """drive_from_camera_ablation's arms (conf/without/) differ from the full camera agent only in their
    lever's settings, and each of those is the reference system's value (the plain config's)."""
    def flat(overrides):
        return flat_config(compose(overrides))

    full, reference = flat(["+experiment=drive_from_camera_ablation"]), flat([])
    levers = {"augmentation": {"agent.augmentation"}, "smoothness": {"agent.smoothness_penalty"},
              "temporal": {"trainer.action_repeat", "agent.n_step"}, "start": {"env.random_start", "env.random_start_speed"},
              "saturation": {"agent.saturation_penalty"}, "lag": {"env.actuator_time_constant"},
              "shared_encoder": {"agent.encoder"}, "auxiliary": {"agent.aux_weight"},
              "small_image_encoder": {"agent.cnn_kernels", "agent.cnn_strides"},
              "exploration": {"exploration.process", "exploration.std", "exploration.action_scale", "exploration.warmup"}}
    assert set(options("without")) == {"nothing", *levers}
    for arm, keys in levers.items():
        cfg = flat(["+experiment=drive_from_camera_ablation", f"without={arm}"])
        changed = {k for k in full if cfg[k] != full[k]}
        assert changed == keys, arm
        assert all(cfg[k] == reference[k] for k in keys), arm
        validate(compose(["+experiment=drive_from_camera_ablation", f"without={arm}"]))


def test_a_setting_an_earlier_config_lacks_counts_as_changed_only_where_it_is_not_at_its_default(compose):
    """A run saved before a setting existed ran with its default (config/saved.py): comparing its config
    with today's (a resume, a reused benchmark job) names the setting only where today's command moves it
    off that default, and a setting whose default changed by the value the earlier run ran with."""
    from omegaconf import OmegaConf

    from av_td3.config.saved import changed_settings, schema_default

    def plain(raw):
        return OmegaConf.to_container(raw, resolve=True)

    earlier = plain(compose(["env.max_marking_overlap=0"]))
    del earlier["env"]["marking_bound_in_eval"]
    for overrides, named in ((["env.max_marking_overlap=0"], False),
                             (["env.max_marking_overlap=0", "env.marking_bound_in_eval=false"], True)):
        raw = compose(overrides)
        assert schema_default(raw, "env.marking_bound_in_eval") is True
        changed = changed_settings(earlier, plain(raw), now_raw=raw)
        assert ("env.marking_bound_in_eval" in changed) == named, changed
        assert "env.marking_bound_in_eval" in changed_settings(earlier, plain(raw))  # without now_raw: absent
    assert schema_default(raw, "env.no_such_setting") != schema_default(raw, "env.no_such_setting")
    # a run saved before the footprint's outline was the default ran with the straight-lane box
    del earlier["env"]["marking_geometry"]
    raw = compose(["env.max_marking_overlap=0"])
    assert changed_settings(earlier, plain(raw), now_raw=raw)["env.marking_geometry"] == ("lane_frame", "outline")

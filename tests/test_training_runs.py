"""Real training runs through the entrypoint: a smoke run, a real Hydra multirun with the joblib
launcher, validation of their event files, and the non-finite guard stopping a run."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from av_td3 import tags
from av_td3.analysis.runs import discover_runs, read_scalars

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "av_td3.train"]


def train(args, tmp_path, check=True, bar=False):
    r = subprocess.run(TRAIN + args + ([] if bar else ["trainer.progress_bar=false"]), capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_smoke_run_with_reference_clipping(tmp_path):
    run = tmp_path / "run"
    train(["+experiment=smoke", "clipping=reference", f"hydra.run.dir={run}"], tmp_path)
    for name in (".hydra/config.yaml", "checkpoint.pt", "results.json", "DONE"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "finished" and results["step"] == 600
    assert results["final_eval"]["mean_reward"] is not None
    (r,) = discover_runs([run])
    s = read_scalars(r, [tags.grad_norm(n, "AFTER", p) for n in tags.NETWORKS for p in (None, "cnn", "mlp")]
                     + [tags.ACTOR_LOSS, tags.CRITIC_LOSS])
    limits = {"actor": 0.025, "critic": 0.25}  # size=smoke's reference limits (conf/size/clipping)
    for net, limit in limits.items():
        for part in (None, "cnn", "mlp"):
            assert np.all(s[tags.grad_norm(net, "AFTER", part)][1] <= limit * (1 + 1e-6))
    # The smoke scale exercises clipping: the limits bite on a good share of the updates.
    clipped = read_scalars(r, [tags.clipped(n) for n in tags.NETWORKS])
    assert np.mean(clipped[tags.clipped("actor")][1]) > 0.25 and np.mean(clipped[tags.clipped("critic")][1]) > 0.25
    # Actor tags only on actor-update steps: half as many as the critic's with policy_delay 2.
    n_actor, n_critic = len(s[tags.ACTOR_LOSS][0]), len(s[tags.CRITIC_LOSS][0])
    assert abs(n_actor - n_critic / 2) <= 1
    # No zero-valued alert events.
    alert_tags = [tags.alert(n, "cnn", lvl) for n in tags.NETWORKS for lvl in tags.ALERT_LEVELS]
    for tag, series in read_scalars(r, alert_tags).items():  # (the smoke limits make them fire)
        assert np.all(series.values > 0), tag
    v = subprocess.run([sys.executable, "-m", "av_td3.cli", "validate", str(run)], capture_output=True,
                       text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr


def run_hparams(run) -> dict:
    """The HParams plugin's record of a run: its hparams (name -> value) and declared metric tags."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {"hparams": {}, "metrics": []}
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    out["hparams"] = dict(data.session_start_info.hparams)
                if data.HasField("experiment"):
                    out["metrics"] = [m.name.tag for m in data.experiment.metric_infos]
    return out


def test_multirun_with_joblib_writes_one_dir_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    first = train(["-m", "+experiment=smoke", "clipping=none,reference", "seed=0,1", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", "trainer.total_steps=300", "trainer.learning_starts=100",
                   "trainer.eval_every=0", f"hydra.sweep.dir={sweep}"], tmp_path, bar=True)
    names = sorted(p.parent.parent.name for p in sweep.glob("*/.hydra/config.yaml"))
    shared = "trainer.eval_every=0,trainer.learning_starts=100,trainer.total_steps=300"
    assert names == [f"clipping={c},{shared},seed={s}" for c in ("none", "reference") for s in (0, 1)]
    # Parallel jobs: no progress bars to interleave, and every log line names its job.
    console = first.stdout + first.stderr
    assert "frame/s" not in console and "\r" not in console
    for name in names:
        assert f"[{name}] resumed" in console or f"[{name}] train |" in console, name
    # HParams: every swept key in every run (an unset limit as NaN), and only metrics the run wrote.
    hparams = {name: run_hparams(sweep / name) for name in names}
    keys = {name: set(h["hparams"]) for name, h in hparams.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1 and "clipping.actor.max_norm" in keys[names[0]]
    for name, h in hparams.items():
        written = set(read_scalars(discover_runs([sweep / name])[0], h["metrics"]))
        assert set(h["metrics"]) == written, name
    assert all((sweep / n / "DONE").exists() for n in names)
    v = subprocess.run([sys.executable, "-m", "av_td3.cli", "validate", str(sweep)], capture_output=True,
                       text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    c = subprocess.run([sys.executable, "-m", "av_td3.cli", "compare", str(sweep), "--baseline",
                        "clipping=none", "--reps", "200"], capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stdout + c.stderr
    assert "clipping=reference" in c.stdout and (tmp_path / "compare" / "groups.csv").exists()  # beside it
    assert not (sweep / "groups.csv").exists()
    # Relaunching the same sweep skips the finished jobs.
    r = train(["-m", "+experiment=smoke", "clipping=none,reference", "seed=0,1",
               "trainer.total_steps=300", "trainer.learning_starts=100", "trainer.eval_every=0",
               f"hydra.sweep.dir={sweep}"], tmp_path)
    assert r.stderr.count("skipping") + r.stdout.count("skipping") >= 4


def test_nan_gradients_stop_the_run_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    # An absurd learning rate overflows the critic to inf/NaN within a few steps: every later loss is
    # non-finite, each update is skipped and counted, and the run stops.
    r = train(["+experiment=smoke", "agent.critic_lr=1e38", "trainer.max_consecutive_nonfinite=3",
               f"hydra.run.dir={run}"], tmp_path, check=False)
    assert r.returncode == 1
    assert "consecutive" in r.stderr and "non-finite" in r.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and results["nonfinite_skips"]["critic"] >= 3
    assert (run / "checkpoint.pt").exists() and not (run / "DONE").exists()


def test_action_repeat_counts_env_frames_everywhere(tmp_path):
    run = tmp_path / "run"
    train(["+experiment=learn_to_drive", "size=smoke", "trainer.action_repeat=3", "exploration.process=pink",
           "exploration.std=0.3", "exploration.final_std=0.1", "exploration.decay_steps=600",
           "agent.n_step=3", "agent.augmentation=shift", "agent.shift_pad=2", "agent.layer_norm=true", "env.frame_stride=2",
           "agent.smoothness_penalty=1", "agent.smoothness_pair=consecutive", "agent.aux_weight=1",
           "trainer.reward_scale=0.1", "trainer.reward_clip=5", f"hydra.run.dir={run}"], tmp_path)
    results = json.loads((run / "results.json").read_text())
    (r,) = discover_runs([run])  # the auxiliary loss on the privileged targets is logged, finite
    aux = read_scalars(r, [tags.AUX_LOSS])[tags.AUX_LOSS]
    assert len(aux.values) and np.isfinite(aux.values).all()
    # 600 frames = ~200 agent steps of 3 frames (an episode that ends mid-repeat makes one step shorter);
    # warm-up to frame 200, then one update per agent step: ~133 updates, not ~400.
    assert results["status"] == "finished" and 600 <= results["step"] < 603
    per_step = (results["step"] - 200) / 3
    assert per_step - 1 <= results["updates"] <= per_step + results["episodes"]
    # An evaluation runs at the first agent step past each multiple of eval_every (< 3 frames later).
    first, final = (e["step"] for e in results["evals"])
    assert 300 <= first < 303 and final == results["step"]
    import csv

    rows = list(csv.DictReader((run / "train.csv").open()))
    # Episode lengths are in env frames: a truncated smoke episode is 150 frames, not 50 agent steps.
    assert max(int(r["length"]) for r in rows) == 150
    # How each ended: truncated at 150 frames is a timeout; shorter, a collision or leaving the road.
    for r in rows:
        expected = ({"success"} if r["success"] == "1" else {"timeout"} if r["length"] == "150"
                    else {"collision", "off_road"})
        assert r["ended"] in expected, r
    assert results["final_eval"]["avg_episode_length"] <= 150
    (r,) = discover_runs([run])
    noise = read_scalars(r, [tags.EXPLORATION_NOISE])[tags.EXPLORATION_NOISE]
    assert noise[1][0] > noise[1][-1] >= 0.1  # the decaying std, logged per episode


@pytest.mark.parametrize("actor_lr, frozen", [(1e-9, True), (3e-4, False)])
def test_validate_flags_a_frozen_actor_from_a_real_run(tmp_path, actor_lr, frozen):
    run = tmp_path / "run"
    train(["+experiment=smoke", f"agent.actor_lr={actor_lr}", f"hydra.run.dir={run}"], tmp_path)
    v = subprocess.run([sys.executable, "-m", "av_td3.cli", "validate", str(run), "--json"],
                       capture_output=True, text=True, timeout=120)
    checks = {c["name"]: c for c in json.loads(v.stdout)["runs"][0]["checks"]}
    assert checks["frozen/actor"]["status"] == ("warn" if frozen else "pass"), checks["frozen/actor"]
    assert checks["frozen/critic"]["status"] == "pass"
    assert all(checks[f"dead/{n}/{p}"]["status"] == "pass" for n in tags.NETWORKS for p in tags.PARTS)


def test_progress_bar_and_log_lines_never_share_a_line(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run(TRAIN + ["+experiment=smoke", "trainer.progress_bar=true", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    lines = [seg for line in out.split("\n") for seg in line.split("\r")]
    bars = [s for s in lines if "frame/s" in s or "it/s" in s]
    logs = [s for s in lines if "eval | step=" in s or "start: step" in s]
    assert bars and len(logs) >= 2  # both were printed ...
    assert not [s for s in logs if "frame" in s.split("eval |")[0].split("start:")[0]]  # ... never glued
    # The warm-up has its own bar: the training bar's rate, hence its ETA, excludes warm-up frames.
    assert any(s.startswith("warm-up:") for s in bars) and any(s.startswith("train:") for s in bars)
    assert any("eval_success=" in s for s in bars)


def tensors(state, prefix=""):
    """(path, tensor) for every tensor of a nested state dict."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from tensors(v, f"{prefix}/{k}")
    elif torch.is_tensor(state):
        yield prefix, state


def test_evaluation_never_changes_what_training_learns(tmp_path):
    """Evaluation episodes (their own env, seeds and bound) leave the training stream alone: two runs that
    differ only in where evaluation ends its episodes report different evaluations and finish with the same
    weights, so an evaluation setting (env.marking_bound_in_eval) changes what a run reports, never what it
    learns."""
    weights, evals = [], []
    for in_eval in ("true", "false"):
        run = tmp_path / in_eval
        train(["+experiment=drive_from_camera_lane_bound", "size=smoke", "trainer.total_steps=1000",
               "trainer.learning_starts=300", "trainer.eval_every=500", "trainer.eval_episodes=1",
               "trainer.final_eval_episodes=2", f"env.marking_bound_in_eval={in_eval}",
               f"hydra.run.dir={run}"], tmp_path)
        weights.append(dict(tensors(torch.load(run / "checkpoint.pt", weights_only=False,
                                               map_location="cpu")["agent"])))
        evals.append((run / "eval.csv").read_text())
    # the first lane invasion ended some evaluation episode only with the bound in evaluation
    assert evals[0] != evals[1]
    a, b = weights
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_policy_average_changes_what_evaluations_drive_not_what_training_learns(tmp_path):
    """agent.policy_average: the same weights after training as without it, the average in the checkpoint,
    and `av-td3 evaluate --weights averaged` reproduces the run's own final evaluation."""
    args = ["+experiment=drive_from_camera", "size=smoke", "trainer.total_steps=600", "trainer.learning_starts=300",
            "trainer.eval_every=0", "trainer.final_eval_episodes=1", "trainer.final_eval_splits=[]",
            "env.max_episode_steps=100"]
    runs = {rate: tmp_path / f"rate{rate}" for rate in ("0", "0.01")}
    for rate, run in runs.items():
        train(args + [f"agent.policy_average={rate}", f"hydra.run.dir={run}"], tmp_path)
    plain, averaged = (dict(tensors(torch.load(run / "checkpoint.pt", weights_only=False,
                                               map_location="cpu")["agent"])) for run in runs.values())
    # the shared encoder's policy: the actor's MLP and the critic's CNN
    assert {k.split("/")[1] for k in set(averaged) - set(plain)} == {"actor_average", "encoder_average"}
    assert all(torch.equal(plain[k], averaged[k]) for k in plain)
    final = json.loads((runs["0.01"] / "results.json").read_text())["final_eval"]
    r = subprocess.run([sys.executable, "-m", "av_td3.cli", "evaluate", str(runs["0.01"]), "--episodes", "1",
                        "--weights", "averaged", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((tmp_path / "evaluate_averaged_weights.json").read_text())["overall"]
    assert again["mean_reward"] == pytest.approx(final["mean_reward"])


def test_evaluations_act_with_the_averaged_weights_and_exploration_with_the_trained(compose, tmp_path):
    from av_td3.config import validate
    from av_td3.trainer import Trainer

    raw = compose(["+experiment=smoke", "agent.policy_average=0.01", "trainer.total_steps=120",
                   "trainer.learning_starts=60", "trainer.eval_every=60", "trainer.eval_episodes=1",
                   "env.max_episode_steps=25", "trainer.progress_bar=false", "torch_threads=1"])
    trainer = Trainer(raw, validate(raw), tmp_path)
    calls = {True: 0, False: 0}
    act = trainer.agent.act

    def counted(obs, averaged=False):
        calls[averaged] += 1
        return act(obs, averaged)

    trainer.agent.act = counted
    trainer.run()
    eval_steps = sum(int(e["avg_episode_length"]) for e in trainer.evals)  # one episode a phase, no repeat
    assert calls[True] == eval_steps > 0
    assert calls[False] > 0  # exploration after the warm-up

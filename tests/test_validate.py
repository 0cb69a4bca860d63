"""``av-td3 validate`` on fake run directories written the way the trainer writes them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from av_td3 import tags
from av_td3.analysis import validate
from av_td3.analysis.events import event_files

REFERENCE = {"actor": {"mode": "norm", "max_norm": 1.0, "norm_type": 2.0, "alert_cnn_warning": 1.5,
                       "alert_cnn_critical": 2.0},
             "critic": {"mode": "norm", "max_norm": 10.0, "norm_type": 2.0, "alert_cnn_warning": 15.0,
                        "alert_cnn_critical": 20.0}}
NO_CLIPPING = {"actor": {"mode": "none"}, "critic": {"mode": "none"}}


def clean_scalars(clipping: dict, updates: int, seed: int = 0) -> dict[str, dict[int, float]]:
    """tag -> {step: value} as the trainer logs a healthy run: critic every 10 steps, the actor at the
    last actor update of each interval (policy_delay 2), BEFORE/AFTER per part and whole."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, float]] = {}
    for net in tags.NETWORKS:
        cfg = clipping[net]
        steps = [110 + 10 * i - (1 if net == "actor" else 0) for i in range(updates)]
        for step in steps:
            cnn, mlp = rng.lognormal(0, 1, 2) * (1 if net == "actor" else 8)
            before = float(np.hypot(cnn, mlp))
            coef = min(1.0, cfg["max_norm"] / (before + 1e-6)) if cfg["mode"] == "norm" else 1.0
            values = {tags.grad_norm(net, "BEFORE"): before, tags.grad_norm(net, "AFTER"): before * coef,
                      tags.clip_ratio(net): coef, tags.clipped(net): float(coef < 1)}
            for part, norm in (("cnn", cnn), ("mlp", mlp)):
                values[tags.grad_norm(net, "BEFORE", part)] = norm
                values[tags.grad_norm(net, "AFTER", part)] = norm * coef
            if net == "actor":
                values[tags.ACTOR_LOSS] = -rng.normal(50, 5)
            else:
                values |= {tags.CRITIC_LOSS: rng.lognormal(), tags.Q1: rng.normal(50, 5),
                           tags.Q2: rng.normal(50, 5)}
            for tag, value in values.items():
                out.setdefault(tag, {})[step] = float(value)
    out[tags.EVAL_MEAN_REWARD] = {500: 12.0, 1000: 30.0}
    return out


def write_run(path, clipping=REFERENCE, updates=40, changes=None, status="finished", total_steps=1000,
              drop=()):
    """A run directory: .hydra/config.yaml (+ overrides), tb/ events via SummaryWriter, results.json and,
    when finished, DONE. ``changes``: {tag: {step: value}} laid over the clean scalars; ``drop``: tags
    left out."""
    (path / ".hydra").mkdir(parents=True)
    config = {"seed": 0, "clipping": clipping, "agent": {"policy_delay": 2},
              "trainer": {"total_steps": total_steps, "learning_starts": 100, "log_every_updates": 10}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=0"]))
    scalars = clean_scalars(clipping, updates)
    for tag, points in (changes or {}).items():
        scalars.setdefault(tag, {}).update(points)
    for tag in drop:
        del scalars[tag]
    with SummaryWriter(str(path / "tb")) as w:
        for tag, points in scalars.items():
            for step, value in sorted(points.items()):
                w.add_scalar(tag, value, step)
    step = total_steps if status == "finished" else total_steps // 2
    results = {"status": status, "step": step, "total_steps": total_steps, "alerts": {},
               "nonfinite_skips": {"actor": 0, "critic": 0}}
    (path / "results.json").write_text(json.dumps(results))
    if status == "finished":
        (path / "DONE").touch()
    return path


def run_validate(capsys, *argv):
    code = validate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def checks_of(out_json: str, run_index: int = 0) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(out_json)["runs"][run_index]["checks"]}


def test_clean_clipped_run_passes(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    code, out, err = run_validate(capsys, run)
    assert code == 0, out + err
    assert "=> PASS" in out and "FAIL" not in out
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert checks["limit/critic"]["status"] == "pass" and checks["limit/critic"]["figures"]["limit"] == 10.0
    assert checks["limit/actor/cnn"]["status"] == "pass"
    ratio = checks["clip_ratio/actor"]
    assert ratio["status"] == "pass" and 0 < ratio["figures"]["clipped_fraction"] < 1
    assert checks["finished"]["status"] == "pass"


def test_after_above_limit_fails_naming_tag_and_step(tmp_path, capsys):
    tag = tags.grad_norm("critic", "AFTER")
    run = write_run(tmp_path / "run", changes={tag: {210: 12.5}})
    code, out, _ = run_validate(capsys, run)
    assert code == 1
    line = next(l for l in out.splitlines() if "limit/critic " in l)
    assert "FAIL" in line and tag in line and "step 210" in line and "12.5" in line


def test_nan_fails(tmp_path, capsys):
    run = write_run(tmp_path / "run", changes={tags.CRITIC_LOSS: {300: float("nan")}})
    code, out, _ = run_validate(capsys, run, "--json")
    assert code == 1
    finite = checks_of(out)["finite"]
    assert finite["status"] == "fail" and finite["figures"]["tags"][0] == {
        "tag": tags.CRITIC_LOSS, "count": 1, "first_step": 300, "value": "nan"}


def test_fired_alert_fails(tmp_path, capsys):
    alert = tags.alert("critic", "cnn", "critical")
    run = write_run(tmp_path / "run", changes={alert: {400: 25.0}})
    code, out, _ = run_validate(capsys, run)
    assert code == 1
    line = next(l for l in out.splitlines() if " alerts " in l)
    assert "FAIL" in line and alert in line and "step 400" in line and "25" in line


def test_truncated_event_file_exits_2_without_traceback(tmp_path):
    run = write_run(tmp_path / "run")
    (events,) = event_files(run / "tb")
    events.write_bytes(events.read_bytes()[:-7])
    proc = subprocess.run([sys.executable, "-m", "av_td3.analysis.validate", str(run)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "truncated record" in proc.stderr and str(events) in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unusable_inputs_exit_2(tmp_path, capsys):
    assert run_validate(capsys, tmp_path / "missing")[0] == 2
    (tmp_path / "empty").mkdir()
    code, _, err = run_validate(capsys, tmp_path / "empty")
    assert code == 2 and "no runs or event files" in err


def test_multirun_fails_only_the_bad_run(tmp_path, capsys):
    multi = tmp_path / "multi"
    multi.mkdir()
    (multi / "multirun.yaml").write_text("hydra: {}\n")
    good = write_run(multi / "clipping=reference" / "seed=0")
    bad = write_run(multi / "clipping=reference" / "seed=1",
                    changes={tags.grad_norm("actor", "AFTER", "mlp"): {109: 3.0}})
    unfinished = write_run(multi / "clipping=reference" / "seed=2", status="stopped")
    code, out, _ = run_validate(capsys, multi, "--quiet")
    assert code == 1
    verdicts = {line.split()[1]: line for line in out.splitlines()}
    assert verdicts[str(good)].startswith("PASS")
    assert verdicts[str(bad)].startswith("FAIL") and "limit/actor/mlp" in verdicts[str(bad)]
    assert verdicts[str(unfinished)].startswith("WARN")
    assert "stopped at step 500/1000" in verdicts[str(unfinished)]


def test_json_output_parses(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    (events,) = event_files(run / "tb")
    code, out, _ = run_validate(capsys, events, run, "--json")  # a bare file of a run: its config applies
    result = json.loads(out)
    assert code == 0 and result["exit_code"] == 0
    assert [r["verdict"] for r in result["runs"]] == ["PASS", "PASS"]
    assert {"name", "status", "message", "figures"} <= set(result["runs"][0]["checks"][0])


def test_mode_none_skips_limit_checks(tmp_path, capsys):
    # unclipped norms far above the reference limits: fine without clipping
    huge = {tags.grad_norm("actor", when, part): {109: value} for when in ("BEFORE", "AFTER")
            for part, value in ((None, 500.0), ("cnn", 300.0), ("mlp", 400.0))}
    run = write_run(tmp_path / "run", clipping=NO_CLIPPING, changes=huge)
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert code == 0
    assert checks["limit/actor"]["status"] == "skip" and "mode=none" in checks["limit/actor"]["message"]
    assert "limit/actor/cnn" not in checks
    assert checks["clip_ratio/actor"]["status"] == "pass"


def test_bare_event_file_gets_health_checks_only(tmp_path, capsys):
    with SummaryWriter(str(tmp_path / "logs")) as w:
        for tag, points in clean_scalars(REFERENCE, 10).items():
            for step, value in points.items():
                w.add_scalar(tag, value, step)
    code, out, _ = run_validate(capsys, tmp_path / "logs")
    assert code == 0 and "health checks only" in out
    checks = checks_of(run_validate(capsys, tmp_path / "logs", "--json")[1])
    assert checks["limit/actor"]["status"] == "skip" and checks["finished"]["status"] == "skip"
    assert checks["after<=before/actor"]["status"] == checks["clip_ratio/critic"]["status"] == "pass"


@pytest.mark.parametrize("change, check, word", [
    ({tags.grad_norm("critic", "BEFORE"): {210: 0.5}}, "after<=before/critic", "increased"),
    ({tags.clip_ratio("actor"): {209: 0.9}}, "clip_ratio/actor", "inconsistent"),
    ({tags.ACTOR_LOSS: {209: -2e9}}, "actor_loss", "> 1e+09"),
])
def test_other_failures(tmp_path, capsys, change, check, word):
    run = write_run(tmp_path / "run", changes=change)
    code, out, _ = run_validate(capsys, run, "--json")
    c = checks_of(out)[check]
    assert code == 1 and c["status"] == "fail" and word in c["message"], c


def test_zero_critic_norm_fails(tmp_path, capsys):
    zero = {t: {110 + 10 * i: 0.0 for i in range(40)} for t in tags.all_grad_tags("critic")
            if t != tags.clip_ratio("critic")}
    run = write_run(tmp_path / "run", changes=zero)
    code, out, _ = run_validate(capsys, run, "--json")
    assert code == 1 and "zero at all 40" in checks_of(out)["gradients/critic"]["message"]


def test_missing_tags_are_named_with_their_consequence(tmp_path, capsys):
    run = write_run(tmp_path / "no_actor", drop=tags.all_grad_tags("actor"))
    code, out, _ = run_validate(capsys, run, "--json")
    assert code == 1 and "actor's updates were never logged" in checks_of(out)["gradients/actor"]["message"]
    run = write_run(tmp_path / "no_ratio", drop=[tags.clip_ratio("critic")])
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert code == 0 and checks["gradients/critic"]["status"] == "warn"
    assert f"no {tags.clip_ratio('critic')}: cannot check the clip ratio" == checks["gradients/critic"]["message"]
    assert checks["clip_ratio/critic"]["status"] == "skip"


def test_a_part_without_gradient_is_flagged_dead(tmp_path, capsys):
    """The reference's actor MLP: BEFORE norm 0 at every logged update (the check needs no config)."""
    zeros = {t: {s: 0.0 for s in range(109, 510, 10)} for t in
             (tags.grad_norm("actor", w, "mlp") for w in ("BEFORE", "AFTER"))}
    run = write_run(tmp_path / "run", changes=zeros)
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert checks["dead/actor/mlp"]["status"] == "warn"
    assert checks["dead/actor/cnn"]["status"] == "pass" and checks["dead/critic/mlp"]["status"] == "pass"
    code, out, _ = run_validate(capsys, run, "--json", "--strict")
    assert checks_of(out)["dead/actor/mlp"]["status"] == "fail" and code == 1


def test_frozen_needs_update_ratios_and_reads_the_last_half(tmp_path, capsys):
    ratios = {tags.update_ratio("actor"): {s: (1e-3 if s < 300 else 1e-8) for s in range(109, 510, 10)},
              tags.update_ratio("critic"): {s: 2e-3 for s in range(110, 510, 10)}}
    run = write_run(tmp_path / "run", changes=ratios)
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert checks["frozen/actor"]["status"] == "warn"  # healthy early, frozen over the last half
    assert checks["frozen/actor"]["figures"]["median_last_half"] == pytest.approx(1e-8)
    assert checks["frozen/critic"]["status"] == "pass"
    code, out, _ = run_validate(capsys, run, "--json", "--frozen-below", "1e-9")
    assert checks_of(out)["frozen/actor"]["status"] == "pass"
    old = write_run(tmp_path / "old")  # no update-ratio tags: nothing to judge
    code, out, _ = run_validate(capsys, old, "--json")
    assert checks_of(out)["frozen/actor"]["status"] == "skip"


def foreign_run(path, parts_factor: float, limits=(1.0, 10.0), old_tags: bool = False):
    """Event files as the reference system wrote them: SPEC's tag names, no .hydra, alerts written as 0
    on every step. ``parts_factor``: how much larger its cnn and mlp AFTER norms are than the whole's
    share (the reference's summed per-parameter norms: ~2)."""
    rng = np.random.default_rng(0)
    with SummaryWriter(str(path)) as w:
        for i in range(50):
            step = 100 + 10 * i
            for net, limit in zip(tags.NETWORKS, limits):
                cnn, mlp = rng.lognormal(0, 1, 2) * limit
                before = float(np.hypot(cnn, mlp))
                coef = min(1.0, limit / (before + 1e-6))
                w.add_scalar(tags.grad_norm(net, "BEFORE"), before, step)
                w.add_scalar(tags.grad_norm(net, "AFTER"), before * coef, step)
                w.add_scalar(tags.clip_ratio(net), coef, step)
                for part, norm in (("cnn", cnn), ("mlp", mlp)):
                    w.add_scalar(tags.grad_norm(net, "AFTER", part), norm * coef * parts_factor, step)
            w.add_scalar(tags.ACTOR_LOSS, -50.0, step)
    return path


def test_foreign_run_with_the_reference_bug_fails_parts_and_says_it_is_a_measurement_error(tmp_path, capsys):
    run = foreign_run(tmp_path / "prefix", parts_factor=2.0)
    code, out, _ = run_validate(capsys, run, "--limit", "actor=1.0", "--limit", "critic=10.0", "--json")
    checks = checks_of(out)
    assert code == 1
    parts = checks["parts/actor"]
    assert parts["status"] == "fail" and parts["figures"]["factor"] == pytest.approx(2.0, rel=1e-3)
    assert "measurement error" in parts["message"]
    assert checks["limit/actor"]["status"] == "pass"  # the whole network was clipped correctly
    assert checks["limit/actor"]["figures"]["limit"] == 1.0


def test_foreign_run_after_the_fix_passes_with_limits_from_the_command_line(tmp_path, capsys):
    run = foreign_run(tmp_path / "postfix", parts_factor=1.0)
    code, out, _ = run_validate(capsys, run, "--json")
    checks = checks_of(out)
    assert checks["limit/actor"]["status"] == "skip" and "--limit actor=" in checks["limit/actor"]["message"]
    code, out, _ = run_validate(capsys, run, "--limit", "actor=1.0", "--limit", "critic=10.0", "--json")
    checks = checks_of(out)
    assert code == 0, [c for c in checks.values() if c["status"] == "fail"]
    assert checks["limit/critic"]["status"] == "pass" and checks["parts/critic"]["status"] == "pass"
    code, _, err = run_validate(capsys, run, "--limit", "actor:1")
    assert code == 2 and "NET[.PART]=MAX_NORM" in err


def test_older_reference_tag_names_are_read_as_part_norms(tmp_path, capsys):
    """gradients/<net>_<part>_norm (the reference before its fix) stand in for the AFTER part tags."""
    path = foreign_run(tmp_path / "old", parts_factor=2.0)
    renamed = tmp_path / "renamed"
    with SummaryWriter(str(renamed)) as w:
        from av_td3.analysis.runs import load_run

        for tag, series in load_run(path).read_all().items():
            for net in tags.NETWORKS:
                for part in tags.PARTS:
                    if tag == tags.grad_norm(net, "AFTER", part):
                        tag = f"gradients/{net}_{part}_norm"
            for step, value in zip(series.steps, series.values):
                w.add_scalar(tag, float(value), int(step))
    code, out, _ = run_validate(capsys, renamed, "--limit", "actor=1.0", "--limit", "critic=10.0", "--json")
    checks = checks_of(out)
    assert checks["parts/actor"]["status"] == "fail"  # the part norms were read, under their old names
    assert checks["parts/actor"]["figures"]["factor"] == pytest.approx(2.0, rel=1e-3)


def test_a_run_resumed_across_the_event_layouts_is_read_whole(tmp_path):
    """Older runs keep their events in RUN/tb/, newer ones in RUN itself (TensorBoard then names the run
    by its directory); a run resumed across the change has both, and both are read."""
    from av_td3.analysis.runs import load_run, read_scalars

    run = write_run(tmp_path / "run")
    with SummaryWriter(str(run)) as w:
        w.add_scalar(tags.EVAL_MEAN_REWARD, 123.0, 5000)
    loaded = load_run(run)
    assert len(loaded.event_files) == 2
    series = read_scalars(loaded, [tags.EVAL_MEAN_REWARD])[tags.EVAL_MEAN_REWARD]
    assert series.steps[-1] == 5000 and series.values[-1] == 123.0 and len(series.steps) > 1

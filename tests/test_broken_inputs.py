"""Broken inputs never stop a whole analysis: compare and report list the run with its problem and go
on; different experiments never share a group; report's exit status and Reproduce line say what ran."""

import json
import subprocess
import sys

import yaml
from test_validate import write_run

from av_td3.analysis import compare as cmp
from av_td3.analysis.report import reproduce_command
from av_td3.cli import main as cli_main

CLI = [sys.executable, "-m", "av_td3.cli"]


def sweep_with_broken_runs(root):
    for seed in (0, 1):
        write_run(root / f"good_{seed}", changes={"eval/mean_reward": {1000: 10.0 + seed}})
        results = root / f"good_{seed}" / "results.json"
        scored = json.loads(results.read_text()) | {"final_eval": {"mean_reward": 10.0 + seed}}
        results.write_text(json.dumps(scored))
    corrupt = write_run(root / "corrupt_results")
    (corrupt / "results.json").write_text('{"status": "fini')  # a session killed mid-write
    rejected = root / "rejected"  # what a rejected config left before configs were checked up front
    (rejected / ".hydra").mkdir(parents=True)
    (rejected / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "clipping": {"actor": {"mode": "norm", "max_norm": -1.0}}}))
    (rejected / "error.txt").write_text("ConfigError: clipping.actor.max_norm: must be positive\n")
    return root


def test_compare_lists_broken_runs_and_writes_every_output(tmp_path, capsys):
    root = sweep_with_broken_runs(tmp_path / "sweep")
    out = tmp_path / "cmp"
    code = cli_main(["compare", str(root), "--out", str(out), "--reps", "200"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "UNREADABLE" in printed and "corrupt_results" in printed and "unreadable results" in printed
    assert "FAILED" in printed and "rejected" in printed and "must be positive" in printed
    for name in ("runs.csv", "groups.csv", "curves.png", "grad_norms.png"):
        assert (out / name).is_file(), name
    table = {e["group"]: e for e in cmp.compare([root], out, "final/mean_reward", None, 200, plots=False)["table"]}
    assert table["(defaults)"]["n"] == 2  # the two good runs still count


def test_report_no_run_reports_beside_a_corrupt_results_json(tmp_path):
    root = sweep_with_broken_runs(tmp_path / "sweep")
    proc = subprocess.run(CLI + ["report", "clipping_ablation", "--no-run", "--sweep-dir", str(root),
                                 "--baseline", "(defaults)", "--reps", "200"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # written, with problems listed
    summary = (root / "report" / "summary.md").read_text()
    assert "corrupt_results" in summary and "unreadable" in summary


def test_runs_whose_composed_configs_differ_never_share_a_group(tmp_path):
    for name, total in (("smoke_a", 300), ("smoke_b", 300), ("full", 1_000_000)):
        run = write_run(tmp_path / name, total_steps=total)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["+experiment=x", "seed=0"]))
    rows = {r.run.path.name: r.group for r in cmp.collect([tmp_path])}
    assert rows["smoke_a"] == rows["smoke_b"] != rows["full"]
    assert "trainer.total_steps=1000000" in rows["full"]


def test_a_setting_some_runs_predate_does_not_split_their_group(tmp_path):
    """A run made before a setting existed lacks its key (it ran with the default): beside runs that have
    the key at any value, it tells nothing apart; a key every run has still does."""
    for name, extra in (("old", {}), ("new", {"update_while_stepping": False}), ("other", {"update_while_stepping": True})):
        run = write_run(tmp_path / name)
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        config["trainer"] |= extra
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = {r.run.path.name: r.group for r in cmp.collect([tmp_path / "old", tmp_path / "new"])}
    assert rows["old"] == rows["new"]
    rows = {r.run.path.name: r.group for r in cmp.collect([tmp_path / "new", tmp_path / "other"])}
    assert rows["new"] != rows["other"] and "trainer.update_while_stepping=True" in rows["other"]


def test_report_rejects_an_unknown_size_and_fails_when_the_sweep_failed(tmp_path):
    proc = subprocess.run(CLI + ["report", "clipping_ablation", "--size", "tiny"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown size 'tiny'" in proc.stderr and "smoke" in proc.stderr
    root = sweep_with_broken_runs(tmp_path / "sweep")
    proc = subprocess.run(CLI + ["report", "clipping_ablation", "--size", "smoke", "--launcher", "no_such_launcher",
                                 "--sweep-dir", str(root), "--baseline", "(defaults)", "--reps", "200"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "the sweep exited with status" in proc.stderr
    summary = (root / "report" / "summary.md").read_text()
    assert ("Reproduce: `av-td3 report clipping_ablation --size smoke --launcher no_such_launcher --baseline "
            "(defaults)`") in summary


def test_reproduce_line_keeps_what_changed_the_sweep():
    line = reproduce_command("td3_vs_ddpg", "full", ["hydra.launcher.partition=gpu"], launcher="slurm", jobs=4)
    assert line == "av-td3 report td3_vs_ddpg --launcher slurm --jobs 4 -- hydra.launcher.partition=gpu"


def test_report_runs_every_experiment_at_the_size_it_composes(compose):
    """The report names the sweep directory and the job names by the experiment's size: an experiment
    that builds on another (vision_ablation on drive_from_camera) runs at the size that one sets."""
    from av_td3.analysis.report import experiment_size, experiments

    assert experiment_size("vision_ablation") == "camera"
    for name in experiments():
        composed = compose([f"+experiment={name}"], return_hydra_config=True)
        assert experiment_size(name) == composed.hydra.runtime.choices.size, name

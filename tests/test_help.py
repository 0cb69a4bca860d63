"""Help a person can read: av-td3-train --help lists the real groups and options (and no internal ones),
argparse help is plain text with every option documented."""

import re
import subprocess
import sys

import pytest

from av_td3 import config_dir

USER_GROUPS = ("agent", "clipping", "env", "scenario", "size", "hydra/launcher")


@pytest.fixture(scope="module")
def train_help():
    proc = subprocess.run([sys.executable, "-m", "av_td3.train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_train_help_lists_every_option_of_the_user_groups_and_no_internal_group(train_help):
    for group in USER_GROUPS:
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        line = next(ln for ln in train_help.splitlines() if ln.strip().startswith(f"{group}="))
        listed = line.split()[0].split("=", 1)[1].split("|")
        assert sorted(listed) == options, (group, listed, options)
    experiments = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    section = train_help.split("Experiments")[1].split("Common settings")[0]
    assert all(re.search(rf"\b{e}\b", section) for e in experiments)
    for internal in ("schema/", "size/agent", "size/env", "size/clipping", "config_schema", "$APP_CONFIG_GROUPS"):
        assert internal not in train_help
    assert train_help.startswith("av-td3-train: train one TD3 driving agent")


@pytest.mark.parametrize("command", [[], ["validate"], ["compare"], ["report"], ["carla-check"]])
def test_cli_help_is_plain_text_with_every_option_documented(command):
    proc = subprocess.run([sys.executable, "-m", "av_td3.cli", *command, "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "``" not in proc.stdout  # reStructuredText markup stays in the docstrings
    # every option line is followed (or continued) by a help text: no bare "  --flag" lines
    bare = [ln for i, ln in enumerate(proc.stdout.splitlines())
            if re.match(r"^  -", ln) and len(ln.split()) <= 2 and not (
                i + 1 < len(proc.stdout.splitlines()) and proc.stdout.splitlines()[i + 1].startswith(" " * 8))]
    assert not bare, bare


def test_validate_names_a_done_run_without_results_for_what_it_is(tmp_path, capsys):
    from test_validate import checks_of, run_validate, write_run

    run = write_run(tmp_path / "run")
    (run / "results.json").unlink()
    _, out, _ = run_validate(capsys, run, "--json")
    finished = checks_of(out)["finished"]
    assert finished["status"] == "warn" and "DONE marker but no results.json" in finished["message"]
    assert "unfinished" not in finished["message"]


@pytest.mark.parametrize("script", ["bench_collect", "bench_env", "bench_events", "bench_learning", "bench_sweep",
                                    "lane_keeping"])
def test_benchmark_help_is_plain_text_and_keeps_its_example_commands_whole(script):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "``" not in proc.stdout
    # a backslash line continuation in the docstring must reach the reader, not join two lines
    joined = [ln for ln in proc.stdout.splitlines() if re.search(r"\S {8,}--", ln)]
    assert not joined, joined

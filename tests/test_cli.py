"""The `reflectgym` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = str(ROOT / "examples" / "custom_env.py")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflectgym.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_help_reads_well() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("envs", "eval", "play"):
        assert command in result.stdout


def test_envs_lists_builtins_and_custom_envs_with_descriptions() -> None:
    result = run("--import", CUSTOM, "envs")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "reflectgym/Sokoban-v0" in lines and "reflectgym/Capitals-v0" in lines
    assert "custom" in lines["reflectgym/Capitals-v0"]


def test_eval_writes_trajectories_and_a_summary(tmp_path: Path) -> None:
    result = run("--import", CUSTOM, "eval", "Capitals-v0", "--episodes", "4", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["success_rate"] == 1.0
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["success"] is True
    assert "success" in result.stdout


def test_eval_replays_a_recorded_file(tmp_path: Path) -> None:
    run("--import", CUSTOM, "eval", "Capitals-v0", "--episodes", "3", "--out", str(tmp_path / "a"), "--quiet")
    replay = f"replay:{tmp_path / 'a' / 'trajectories.jsonl'}"
    result = run(
        "--import",
        CUSTOM,
        "eval",
        "Capitals-v0",
        "--agent",
        replay,
        "--episodes",
        "3",
        "--quiet",
        "--out",
        str(tmp_path / "b"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["success_rate"] == 1.0


def test_replay_takes_an_eval_folder_of_one_env_and_names_the_files_of_several(tmp_path: Path) -> None:
    from reflectgym.agents.scripted import recorded_file

    for run_dir in ("one/Capitals-v0", "two/Math-v0", "two/Sokoban-v0"):
        (tmp_path / run_dir).mkdir(parents=True)
        (tmp_path / run_dir / "trajectories.jsonl").write_text("")
    assert recorded_file(tmp_path / "one") == tmp_path / "one" / "Capitals-v0" / "trajectories.jsonl"
    assert recorded_file(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    with pytest.raises(ValueError, match=r"holds 2 trajectories\.jsonl files .*Math-v0"):
        recorded_file(tmp_path / "two")


def test_unknown_env_is_a_clear_error() -> None:
    result = run("eval", "NoSuchEnv-v0", "--quiet")
    assert result.returncode == 2 and "NoSuchEnv" in result.stderr


def test_play_takes_moves_from_the_terminal() -> None:
    result = run(
        "--import",
        CUSTOM,
        "play",
        "Capitals-v0",
        "--env-arg",
        'feedback="hint"',
        stdin="Rome\nNairobi\n:reset\n:quit\n",
    )
    assert result.returncode == 0, result.stderr
    assert "starts with 'N'" in result.stdout and "Correct." in result.stdout and "Episode solved" in result.stdout


def test_play_takes_a_code_block_over_several_lines() -> None:
    solution = "```python\ndef add(a, b):\n    return a + b\n```\n"
    task = {
        "task_id": "add", "prompt": "def add(a, b):\n", "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add",
    }  # fmt: skip
    result = run("play", "Code-v0", "--env-arg", f"tasks={json.dumps([task])}", stdin=solution + ":quit\n")
    assert result.returncode == 0, result.stderr
    assert "Episode solved" in result.stdout and "no Python code" not in result.stdout, result.stdout


def test_eval_a_tiny_hf_model_on_every_family_writes_a_report(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from support.resources import resource_missing

    from reflectgym.agents.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    envs = ["Sokoban-v0", "Math-v0", "Capitals-v0"] + ([] if resource_missing("browser") else ["Web-v0"])
    out = tmp_path / "run"
    result = run(
        "--import", CUSTOM, "eval", *envs, "--policy", f"hf:{model}", "--episodes", "2", "--max-turns", "3",
        "--max-new-tokens", "8", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summaries = json.loads((out / "summaries.json").read_text())
    assert [s["env_id"] for s in summaries] == [f"reflectgym/{env}" for env in envs]
    assert all(s["episodes"] == 2 and s["errors"] == 0 and s["mean_tokens"] > 0 for s in summaries)
    line = json.loads((out / "reflectgym_Sokoban-v0" / "trajectories.jsonl").read_text().splitlines()[0])
    assert line["turns"][0]["action_token_ids"] and sum(line["metadata"]["tokens"]["loss_mask"]) > 0
    assert "Sokoban" in (out / "report.html").read_text()
    again = run("report", str(out), "--out", str(tmp_path / "again.html"), "--title", "Tiny")
    assert again.returncode == 0 and "Tiny" in (tmp_path / "again.html").read_text()


def test_eval_a_suite_with_the_oracle() -> None:
    result = run("eval", "--suite", "math", "--episodes", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "reflectgym/Math-v0" in result.stdout and "1.00" in result.stdout


def test_unknown_policy_is_a_clear_error() -> None:
    result = run("eval", "Math-v0", "--policy", "nope:x", "--quiet")
    assert result.returncode == 2 and "unknown policy" in result.stderr


def test_train_runs_the_trainer_named_in_the_config_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "bc.yaml"
    config.write_text((ROOT / "examples" / "configs" / "sokoban_bc.yaml").read_text())
    out = tmp_path / "run"
    result = run("train", str(config), "--steps", "2", "--num-demonstrations", "4", "--output-dir", str(out),
                 "--progress", "false")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sft: 2 steps run" in result.stdout
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["num_demonstrations"] == 4 and recorded["trainer"] == "sft"
    assert (out / "model" / "config.json").is_file() and (out / "checkpoints" / "latest").is_file()
    rerun = run("train", str(out / "config.json"), "--steps", "1", "--output-dir", str(tmp_path / "rerun"),
                "--progress", "false")  # fmt: skip
    assert rerun.returncode == 0 and "sft: 1 steps run" in rerun.stdout, rerun.stderr  # a run's record reruns it
    report = run("report", str(out))
    assert report.returncode == 0, report.stderr
    assert "<svg" in (out / "report.html").read_text()


def test_train_option_errors_and_help_name_the_options(tmp_path: Path) -> None:
    config = tmp_path / "grpo.yaml"
    config.write_text("trainer: grpo\nsteps: 1\n")
    bad = run("train", str(config), "--learning-rate", "1e-5")
    assert bad.returncode == 2 and "unknown GRPOConfig option(s): 'learning_rate'" in bad.stderr
    worse = run("train", str(config), "--group-size", "1")
    assert worse.returncode == 2 and "group_size must be at least 2" in worse.stderr
    unnamed = tmp_path / "none.yaml"
    unnamed.write_text("steps: 1\n")
    assert "say which trainer" in run("train", str(unnamed)).stderr
    helped = run("train", str(config), "--help")
    assert helped.returncode == 0 and "--kl-coef" in helped.stdout and "--lora-rank" in helped.stdout


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Runs the command in this process (faster than a subprocess); returns (status, stdout, stderr)."""
    from reflectgym.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def own_sys_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_import_errors_are_one_line(capsys: pytest.CaptureFixture[str], own_sys_path: Path) -> None:
    code, _, err = cli(capsys, "--import", "missing.py", "envs")
    assert code == 2 and err.strip() == "reflectgym envs: --import missing.py: no such file"
    code, _, err = cli(capsys, "--import", "nosuchmod_reflectgym", "envs")
    assert code == 2 and "No module named 'nosuchmod_reflectgym'" in err and "Traceback" not in err
    (own_sys_path / "broken_envs.py").write_text("x = 1\ndef f(:\n")
    for target in ("broken_envs", "broken_envs.py"):
        code, _, err = cli(capsys, "--import", target, "envs")
        assert code == 2 and "broken_envs.py:2: SyntaxError: " in err and "Traceback" not in err, err


def test_import_finds_modules_in_the_current_folder(own_sys_path: Path) -> None:
    script = Path(sys.executable).parent / "reflectgym"
    if not script.is_file():
        pytest.skip("no reflectgym console script beside this Python")
    (own_sys_path / "my_cli_envs.py").write_text(Path(CUSTOM).read_text())
    result = subprocess.run(
        [str(script), "--import", "my_cli_envs", "eval", "Capitals-v0", "--episodes", "1", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=own_sys_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_all_tasks_plays_every_task_of_the_list_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gymnasium as gym

    import reflectgym  # noqa: F401  (registers the built-in envs)

    env = gym.make("reflectgym/Code-v0")
    ids = env.unwrapped.task_ids()  # type: ignore[attr-defined]
    env.close()
    assert ids is not None and len(ids) == len(set(ids)) > 10
    code, _, err = cli(capsys, "eval", "Code-v0", "--all-tasks", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    played = [json.loads(line) for line in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert [episode["task_id"] for episode in played] == ids and all(episode["success"] for episode in played)
    code, out, err = cli(capsys, "eval", "Code-v0", "Math-v0", "--all-tasks", "--out", str(tmp_path / "two"))
    assert code == 2 and "Math-v0 generates its tasks" in err  # found before Code-v0's episodes are played
    assert not (tmp_path / "two").exists() and out == ""


def test_unknown_family_and_suite_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "envs", "--family", "nope")
    assert code == 2 and "no envs in family 'nope'; families:" in err
    code, _, err = cli(capsys, "eval", "--suite", "nope")
    assert code == 2 and "no envs in suite 'nope'" in err


def test_a_misspelled_option_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--episdoes", "2")
    assert code == 2 and "usage: reflectgym eval" in err and "unrecognized arguments: --episdoes 2" in err
    code, _, err = cli(capsys, "train")
    assert code == 2 and "name a config file" in err and "overrides" not in err


def test_scripted_agents_stop_at_max_turns_and_refuse_policy_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "eval", "Sokoban-v0", "--agent", "random", "--max-turns", "3", "--episodes", "2",
                       "--quiet")  # fmt: skip
    assert code == 0 and " 3.0 " in out.splitlines()[-1]
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--agent", "random", "--group-size", "4", "--max-tokens", "9")
    assert code == 2 and "--group-size, --max-tokens: only for model policies (--policy)" in err


class ResetFailsEnv(gym.Env[str, str]):
    """Made fine; every reset fails (a dataset server down, say)."""

    observation_space = action_space = gym.spaces.Text(10)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        raise RuntimeError("the task server is down")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        raise AssertionError("never reached")


def test_eval_with_every_episode_failed_says_why_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    import reflectgym

    env_id = reflectgym.register("ResetFails-v0", ResetFailsEnv)
    code, out, err = cli(capsys, "eval", env_id, "--episodes", "2", "--quiet")
    assert code == 1 and "errors" in out
    assert f"every episode of {env_id} failed; the first with: RuntimeError: the task server is down" in err


def test_an_unknown_sandbox_fails_before_any_episode(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "eval", "Code-v0", "--env-arg", 'sandbox="nope"', "--episodes", "2", "--quiet")
    assert code == 2 and "unknown sandbox 'nope'; choose one of" in err


def test_eval_report_holds_only_this_runs_episodes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "ev")
    assert cli(capsys, "eval", "Sokoban-v0", "Math-v0", "--episodes", "2", "--out", out, "--quiet")[0] == 0
    assert cli(capsys, "eval", "Sokoban-v0", "--episodes", "3", "--out", out, "--quiet", "--overwrite")[0] == 0
    assert "Trajectories (3)" in (tmp_path / "ev" / "report.html").read_text()


def test_an_out_folder_with_results_is_refused_unless_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "ev"
    assert cli(capsys, "eval", "Sokoban-v0", "Math-v0", "--episodes", "2", "--out", str(out), "--quiet")[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--episodes", "3", "--out", str(out), "--quiet")
    assert code == 2 and "already holds results" in err and "--overwrite" in err
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--episodes", "3", "--out", str(out), "--quiet", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html", "summary.json", "trajectories.jsonl"]
    code, report, _ = cli(capsys, "report", str(out))
    assert code == 0 and "(3 episodes)" in report


def test_overwrite_clears_only_this_runs_results_not_other_runs_beside_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    (runs / "sokoban-grpo").mkdir(parents=True)
    (runs / "sokoban-grpo" / "report.html").write_text("a training run's report")
    (runs / "old-eval").mkdir()
    (runs / "old-eval" / "summary.json").write_text("{}")
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--episodes", "1", "--out", str(runs), "--quiet")
    assert code == 0, err  # (other runs' folders are not this folder's results)
    code, _, err = cli(capsys, "eval", "Sokoban-v0", "--episodes", "1", "--out", str(runs), "--quiet", "--overwrite")
    assert code == 0, err
    assert (runs / "sokoban-grpo" / "report.html").is_file() and (runs / "old-eval" / "summary.json").is_file()


def test_out_in_the_way_of_a_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("hi")
    code, _, err = cli(capsys, "eval", "Math-v0", "--episodes", "1", "--quiet", "--out", str(tmp_path / "afile"))
    assert code == 2 and "it is a file; name a folder" in err and "Traceback" not in err
    code, _, err = cli(capsys, "eval", "Math-v0", "--episodes", "1", "--quiet", "--out", str(tmp_path / "afile" / "x"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Not a directory" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--env-arg", "feedback"], "--env-arg takes key=value; got 'feedback'"),
        (["--episodes", "-3"], "--episodes must be at least 1; got -3"),
        (["--policy", "hf:/no/such/model", "--num-envs", "0"], "--num-envs must be at least 1; got 0"),
        (["--policy", "hf:/no/such/model", "--temperature", "-1"], "temperature must be >= 0"),
        (["--policy", "hf:/no/such/model", "--env-arg", "nosuch=1"], "cannot make reflectgym/Math-v0: TypeError"),
        (["--policy", "openai:localhost:8000/v1"], "openai: needs the server's http(s) URL"),
    ],
)
def test_bad_eval_options_are_usage_errors_before_any_model_loads(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "eval", "Math-v0", "--quiet", *options)
    assert code == 2 and message in err, err


def test_an_unknown_env_with_a_policy_fails_before_the_model_loads(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "eval", "NoSuch-v0", "--policy", "hf:/no/such/model", "--quiet")
    assert code == 2 and "cannot make reflectgym/NoSuch-v0: NameNotFound" in err and "no checkpoint" not in err


def test_report_skips_a_last_line_cut_short(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli(capsys, "eval", "Math-v0", "--episodes", "3", "--out", str(tmp_path), "--quiet")[0] == 0
    path = tmp_path / "trajectories.jsonl"
    path.write_text(path.read_text()[:-40])
    code, out, err = cli(capsys, "report", str(tmp_path))
    assert code == 0 and "(2 episodes)" in out and len(err.splitlines()) == 1
    assert err.startswith(f"reflectgym report: warning: {path}:3: skipped the last line, cut short")


def test_train_errors_name_the_file_the_line_and_the_missing_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1\n")
    code, _, err = cli(capsys, "train", str(bad))
    assert code == 2 and f"{bad}: line 2: invalid YAML" in err
    monkeypatch.chdir(tmp_path)  # a fresh folder: runs/sokoban-bc/model is not there
    code, _, err = cli(capsys, "train", str(ROOT / "examples" / "configs" / "sokoban_grpo.yaml"), "--steps", "1")
    assert code == 2 and "no checkpoint at runs/sokoban-bc/model" in err and "sokoban_bc.yaml" in err


def test_train_help_shows_the_config_files_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "train", str(ROOT / "examples" / "configs" / "sokoban_grpo.yaml"), "--help")
    assert code == 0 and "(default: runs/sokoban-bc/model, from the config file)" in out
    assert "--model TEXT" in out and "--env-kwargs MAPPING" in out and "required" not in out


def test_report_out_is_a_folder_for_a_training_run_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from reflectgym.trainers.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path / "run")
    logger.log(1, {"loss": 1.0})
    logger.close()
    code, out, _ = cli(capsys, "report", str(tmp_path / "run"), "--out", str(tmp_path / "rep"))
    assert code == 0 and (tmp_path / "rep" / "report.html").is_file(), out

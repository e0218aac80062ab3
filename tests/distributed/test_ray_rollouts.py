"""Rollouts on a real local Ray cluster: the same trajectories as the local engine, groups numbered for the whole
run, a dead actor losing only its shard (run again, or returned as errors), and a clear error for an actor that
cannot start."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from reflectgym import cli
from reflectgym.agents import Generation, RolloutConfig, RolloutEngine, Sampling
from reflectgym.core.spaces import FreeText
from reflectgym.core.types import Verdict

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from reflectgym.distributed import RayRolloutConfig, RayRolloutPool, WorkerStartError  # noqa: E402


class CountdownEnv(gym.Env[str, str]):
    """Solved when the reply names the seed's number; a chosen seed kills its process (once, if `once` is a path)."""

    def __init__(self, die_on: int | None = None, once: str | None = None) -> None:
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self.die_on, self.once, self.target = die_on, once, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.target = int(self.np_random.integers(0, 3))
        if seed == self.die_on and (self.once is None or not os.path.exists(self.once)):
            if self.once is not None:
                Path(self.once).touch()
            os._exit(1)  # as an actor lost with its node, or killed for memory
        task_id = (options or {}).get("task_id", f"t{seed}")
        return f"say {self.target}", {"task_id": task_id, "feedback": ""}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        solved = action.strip() == str(self.target)
        verdict = Verdict(reward=float(solved), passed=solved, feedback="right" if solved else f"not {action}")
        return "again", float(solved), solved, False, {"feedback": verdict.feedback, "verdict": verdict}


class CyclingPolicy:
    """Answers 0, 1, 2, 0, ... per conversation length: deterministic, so episodes depend only on their seeds."""

    name = "cycling"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        return [Generation(str(len(conversation) % 3)) for conversation in conversations]


class SeedEchoPolicy:
    """Replies with the sampling seed its request got: what a sampler with that seed depends on."""

    name = "seed-echo"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        return [Generation(str(sampling.request_seed(position))) for position in range(len(conversations))]


class LockInVerdictEnv(CountdownEnv):
    """On seed 1, a verdict that holds a lock: a trajectory that cannot be pickled."""

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        if self.target >= 0 and self._np_random_seed == 1:
            verdict = info["verdict"]
            info["verdict"] = Verdict(verdict.reward, verdict.passed, verdict.feedback, {"lock": threading.Lock()})
        return observation, reward, terminated, truncated, info


def failing_policy() -> CyclingPolicy:
    raise ValueError("no such model: ./missing-checkpoint")


ROLLOUT = RolloutConfig(num_envs=2, group_size=2, max_turns=2, system_prompt="", lockstep=True)


def summary(trajectories: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [
        (t.seed, t.task_id, t.metadata["group"], t.metadata["index"], [turn.action for turn in t.turns], t.success)
        for t in trajectories
    ]


def test_actors_return_what_the_local_engine_does_with_groups_numbered_for_the_whole_run() -> None:
    seeds = [11, 12, 13, 14, 15, 16, 17]
    local = RolloutEngine(CyclingPolicy(), CountdownEnv, "countdown", ROLLOUT).collect(seeds)
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=3)
    with RayRolloutPool(CyclingPolicy, CountdownEnv, "countdown", ROLLOUT, config) as pool:
        groups = list(pool.run(seeds))
        assert sorted(group[0].metadata["group"] for group in groups) == list(range(len(seeds)))
        remote = pool.collect(seeds)
        assert pool.stats()["steps"] == 2 * sum(len(t.turns) for t in remote)  # both runs' steps
    assert summary(remote) == summary(local)
    assert any(t.success for t in remote) and not all(t.success for t in remote)
    assert {t.metadata["policy"] for t in remote} == {"cycling"} and pool.policy_name == "cycling"


def test_sampling_seeds_follow_the_groups_of_the_whole_run_not_of_a_shard() -> None:
    rollout = dataclasses.replace(ROLLOUT, sampling=Sampling(temperature=1.0, seed=7))
    local = RolloutEngine(SeedEchoPolicy(), CountdownEnv, "countdown", rollout).collect(range(6))
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=2)
    with RayRolloutPool(SeedEchoPolicy, CountdownEnv, "countdown", rollout, config) as pool:
        remote = pool.collect(range(6))
    assert summary(remote) == summary(local)
    assert len({t.turns[0].action for t in remote}) == len(remote)  # every episode sampled with a seed of its own


def test_a_trajectory_that_cannot_be_sent_back_is_an_error_of_its_own() -> None:
    config = RayRolloutConfig(num_workers=1, seeds_per_shard=4)
    with RayRolloutPool(CyclingPolicy, LockInVerdictEnv, "countdown", ROLLOUT, config) as pool:
        trajectories = pool.collect(range(3))
    assert [t.seed for t in trajectories] == [0, 0, 1, 1, 2, 2]
    for trajectory in trajectories:
        if trajectory.seed == 1:
            assert trajectory.metadata["stop_reason"] == "error" and not trajectory.turns
            assert "could not be sent back from its Ray actor" in trajectory.metadata["error"]
            assert trajectory.metadata["group"] == 1 and trajectory.task_id == "t1"
        else:
            assert trajectory.turns and "error" not in trajectory.metadata


def test_workers_the_cluster_cannot_place_are_an_error_after_the_start_timeout() -> None:
    config = RayRolloutConfig(num_workers=5, start_timeout_s=2)  # 5 CPUs asked, 4 in the cluster
    with pytest.warns(UserWarning, match="5 x 1 CPUs, the cluster has 4"), pytest.raises(WorkerStartError) as caught:
        RayRolloutPool(CyclingPolicy, CountdownEnv, "countdown", ROLLOUT, config)
    assert "did not start within 2 s" in str(caught.value)


def test_task_ids_follow_their_seeds_across_shards() -> None:
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=2)
    with RayRolloutPool(CyclingPolicy, CountdownEnv, "countdown", ROLLOUT, config) as pool:
        trajectories = pool.collect([1, 2, 3, 4, 5], task_ids=["a", "b", "c", "d", "e"])
        with pytest.raises(ValueError, match="one per seed"):
            pool.collect([1, 2], task_ids=["a"])
    assert [(t.seed, t.task_id) for t in trajectories[::2]] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]


def test_a_shard_lost_with_its_actor_runs_again_on_a_fresh_one(tmp_path: Path) -> None:
    marker = str(tmp_path / "died-once")
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=2, max_shard_retries=1)
    dies_once = lambda: CountdownEnv(die_on=3, once=marker)  # noqa: E731
    with RayRolloutPool(CyclingPolicy, dies_once, "countdown", ROLLOUT, config) as pool:
        trajectories = pool.collect(range(6))
        assert pool.lost_actors == 1
    local = RolloutEngine(CyclingPolicy(), CountdownEnv, "countdown", ROLLOUT).collect(range(6))
    assert summary(trajectories) == summary(local)


def test_a_shard_that_keeps_killing_its_actor_comes_back_as_errors_and_the_rest_is_kept() -> None:
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=2, max_shard_retries=1)
    with RayRolloutPool(CyclingPolicy, lambda: CountdownEnv(die_on=3), "countdown", ROLLOUT, config) as pool:
        trajectories = pool.collect(range(6))
        assert pool.lost_actors == 2  # the first try and the retry
        again = pool.collect([0, 1])  # the pool goes on with fresh actors
    assert [t.seed for t in trajectories] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    lost = [t for t in trajectories if t.seed in (2, 3)]  # the shard of seeds 2 and 3
    assert all(t.metadata["stop_reason"] == "error" and "died" in t.metadata["error"] for t in lost)
    assert [t.metadata["group"] for t in lost] == [2, 2, 3, 3] and not any(t.turns for t in lost)
    kept = [t for t in trajectories if t.seed not in (2, 3)]
    assert all(t.turns and t.metadata["stop_reason"] != "error" for t in kept)
    assert [t.seed for t in again] == [0, 0, 1, 1]


def test_an_actor_that_cannot_start_is_a_clear_error() -> None:
    with pytest.raises(WorkerStartError) as caught:
        RayRolloutPool(failing_policy, CountdownEnv, "countdown", ROLLOUT, RayRolloutConfig(num_workers=1))
    assert str(caught.value) == "a rollout worker could not start: ValueError: no such model: ./missing-checkpoint"


def test_breaking_off_a_run_replaces_the_busy_actors_and_the_next_run_is_whole() -> None:
    config = RayRolloutConfig(num_workers=2, seeds_per_shard=1)
    with RayRolloutPool(CyclingPolicy, CountdownEnv, "countdown", ROLLOUT, config) as pool:
        run = pool.run(range(10))
        first = next(run)
        run.close()
        assert len(first) == 2
        assert [t.seed for t in pool.collect([7, 8, 9])] == [7, 7, 8, 8, 9, 9]


def test_a_built_in_env_runs_in_the_actors_by_its_registered_id() -> None:
    def make_env() -> gym.Env[str, str]:
        return gym.make("reflectgym:reflectgym/Sokoban-v0")

    rollout = RolloutConfig(num_envs=2, group_size=1, max_turns=2)
    with RayRolloutPool(CyclingPolicy, make_env, "reflectgym/Sokoban-v0", rollout, RayRolloutConfig(1)) as pool:
        trajectories = pool.collect([0, 1])
    assert [t.seed for t in trajectories] == [0, 1]
    assert all(len(t.turns) == 2 and t.turns[0].feedback and t.task_id for t in trajectories), trajectories[0]


def test_config_is_checked() -> None:
    for bad in ({"num_workers": 0}, {"seeds_per_shard": 0}, {"max_shard_retries": -1}, {"num_gpus_per_worker": -1}):
        with pytest.raises(ValueError):
            RayRolloutConfig(**bad)


CAPITALS = """
import reflectgym

reflectgym.register_task_env(
    "Capitals-v0",
    [{"id": "fr", "prompt": "Capital of France?", "answer": "Paris"},
     {"id": "it", "prompt": "Capital of Italy?", "answer": "Rome"}],
    lambda task, answer: task.reference.lower() in answer.lower(),
)
"""


@pytest.fixture
def paris_server() -> Iterator[str]:
    """An OpenAI-compatible server that answers every chat with "Paris"."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            choice = {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
            body = json.dumps({"choices": [choice], "usage": {"completion_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_cli_eval_plays_on_ray_actors_that_load_the_imported_envs(
    tmp_path: Path, paris_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("capitals.py").write_text(CAPITALS, encoding="utf-8")
    argv = ["--import", "capitals.py", "eval", "Capitals-v0", "--policy", f"openai:{paris_server}", "--model", "m"]
    argv += ["--all-tasks", "--group-size", "2", "--ray-workers", "2", "--out", "out", "--quiet"]
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in Path("out/trajectories.jsonl").read_text(encoding="utf-8").splitlines()]
    played = [(row["task_id"], row["metadata"]["group"], row["metadata"]["stop_reason"]) for row in rows]
    assert sorted(played) == [("fr", 0, "terminated")] * 2 + [("it", 1, "truncated")] * 2, played
    summary = json.loads(Path("out/summary.json").read_text(encoding="utf-8"))
    assert summary["episodes"] == 4 and summary["success_rate"] == 0.5 and summary["agent"] == "openai:m"


def test_cli_ray_options_are_checked_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", "Sokoban-v0", "--ray-workers", "2"]) == 2  # a scripted agent: no Ray
    assert "--ray-workers: only for model policies" in capsys.readouterr().err
    assert cli.main(["eval", "Sokoban-v0", "--policy", "openai:http://x/v1", "--ray-address", "auto"]) == 2
    assert "--ray-address: only with --ray-workers" in capsys.readouterr().err
    assert cli.main(["eval", "Sokoban-v0", "--policy", "openai:http://x/v1", "--ray-workers", "0"]) == 2
    assert "--ray-workers must be at least 1" in capsys.readouterr().err
    assert cli.main(["eval", "Sokoban-v0", "--policy", "openai:localhost:8000/v1", "--ray-workers", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "reflectgym eval: openai: needs the server's http(s) URL, e.g. openai:http://127.0.0.1:8000/v1; "
        "got 'localhost:8000/v1'"
    ]
    assert cli.main(["eval", "Sokoban-v0", "--policy", "openai:http://x/v1", "--ray-gpus-per-worker", "1"]) == 2
    assert "--ray-gpus-per-worker: a number >= 0, only with --ray-workers" in capsys.readouterr().err


def test_cli_eval_with_a_policy_no_actor_can_load_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-checkpoint-here"
    argv = ["eval", "Sokoban-v0", "--policy", f"hf:{missing}", "--ray-workers", "1", "--episodes", "1", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("reflectgym eval: a rollout worker could not start: "), err

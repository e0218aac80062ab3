"""Agent-R data-parallel under torchrun, for real: two CPU ranks (gloo) each search their share of an iteration's
tasks, gather every task's conversations, and take the same steps as one process searching and training on the
whole task set; the iteration's data file is the same, and a resumed two-rank run reads it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.torchrun import run_ranks, untimed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])  # (the tests folder: support.toy_envs)
import gymnasium as gym
import numpy as np
import torch
from support.toy_envs import CounterEnv
from reflectgym.agents.policy import Generation
from reflectgym.trainers.agent_r.trainer import AgentRConfig, AgentRTrainer

class Adder:
    \"\"\"Says "add 1|2|3" from each request's own seed (the search's seeds are per task); judges "add 3" Bad.\"\"\"
    name = "adder"
    def __init__(self):
        self.calls = 0
    def generate(self, conversations, sampling):
        self.calls += 1
        prompt = conversations[0][-1]["content"]
        if "Judgement:" in prompt:
            current = prompt.split("Current action:\\n", 1)[1].split("\\n", 1)[0]
            return [Generation("Judgement: " + ("Bad" if current == "add 3" else "Good"))]
        seeds = [sampling.request_seed(position) for position in range(len(conversations))]
        return [Generation(f"add {np.random.default_rng(seed).integers(1, 4)}") for seed in seeds]

env_id = "reflectgym-test/AgentRCounterDDP-v0"
gym.register(env_id, entry_point=CounterEnv, kwargs={"max_steps": 6, "wait_action": True})
model, out, steps, resume = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "resume"
# 3 tasks: rank 0 searches two, rank 1 one. Batches of 5 with minibatches of 2: rank 0 holds 3 sequences (2 passes),
# rank 1 holds 2 (1 pass, then an idle one).
config = AgentRConfig(model=model, env_id=env_id, env_kwargs={}, output_dir=out, steps=steps, steps_per_iteration=2,
                      tasks_per_iteration=3, first_seed=1, batch_size=5, minibatch_size=2, branching=3, max_depth=4,
                      walks=12, lr=1e-2, save_every=1, progress=False, device="cpu", resume=resume)
actor = Adder()
run = AgentRTrainer(config, actor=actor)
searched = []
inner = run._task_data
def recording(iteration, task_seed):
    searched.append(task_seed)
    return inner(iteration, task_seed)
run._task_data = recording
history = run.train()
rank = int(os.environ.get("RANK", "0"))
record = {"weights": run.model.state_dict(), "history": history, "searched": searched, "actor_calls": actor.calls}
torch.save(record, os.path.join(out, f"rank{rank}.pt"))
"""


def launch(folder: Path, model: Path, out: Path, processes: int, steps: int = 2, resume: bool = False) -> None:
    script = folder / "agent_r_train.py"
    script.write_text(SCRIPT)
    arguments = [str(TESTS), str(model), str(out), str(steps), "resume" if resume else "fresh"]
    run_ranks(script, processes, arguments, timeout=300)


def load(out: Path, rank: int) -> dict[str, Any]:
    return torch.load(out / f"rank{rank}.pt", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process and two ranks, each one iteration (2 steps) from the same tiny model."""
    folder = tmp_path_factory.mktemp("agent_r_ddp")
    model = build_tiny_model(folder / "model", TinyModelConfig(seed=2))
    launch(folder, model, folder / "single", 1)
    launch(folder, model, folder / "ddp", 2)
    return folder


@pytest.mark.slow
def test_two_ranks_search_their_share_and_take_the_same_steps_as_one_process(runs: Path) -> None:
    single = load(runs / "single", 0)
    ranks = [load(runs / "ddp", rank) for rank in (0, 1)]
    assert single["searched"] == [1, 2, 3]
    assert [rank["searched"] for rank in ranks] == [[1, 3], [2]], "each rank searched its share of the tasks"
    first = single["history"][0]
    assert first["tasks_solved_in_search"] >= 2 and first["revision_conversations"] > 0
    assert first["sequences"] > 5, "more sequences than a batch: the steps take different batches"
    for name, tensor in single["weights"].items():
        assert torch.allclose(ranks[0]["weights"][name], tensor, atol=1e-5), name
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), f"ranks disagree on {name}"
    assert untimed(ranks[0]["history"]) == untimed(ranks[1]["history"]), "metrics are global: every rank logs the same"
    for ddp_step, single_step in zip(untimed(ranks[0]["history"]), untimed(single["history"]), strict=True):
        assert ddp_step.keys() == single_step.keys()
        for key, value in single_step.items():
            assert ddp_step[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.slow
def test_the_iteration_file_holds_every_ranks_data_as_one_process_writes_it(runs: Path) -> None:
    data = "agent_r/iteration-0.jsonl"
    written = (runs / "ddp" / data).read_text(encoding="utf-8")
    assert written and written == (runs / "single" / data).read_text(encoding="utf-8")
    assert len(written.splitlines()) == load(runs / "ddp", 0)["history"][0]["sequences"]
    assert not list((runs / "ddp" / "agent_r").glob("*.partial"))


@pytest.mark.slow
def test_a_resumed_two_rank_run_reads_the_iteration_back_and_matches_one_process(runs: Path) -> None:
    model, cut = runs / "model", runs / "cut"
    launch(runs, model, cut, 2, steps=1)  # stops after step 1, inside iteration 0 (its data written)
    launch(runs, model, cut, 2, steps=2, resume=True)
    single = load(runs / "single", 0)
    resumed = [load(cut, rank) for rank in (0, 1)]
    for rank in resumed:  # every rank read the iteration back: no search, no judge
        assert rank["searched"] == [] and rank["actor_calls"] == 0
        assert [h["step"] for h in rank["history"]] == [2.0]
    for name, tensor in single["weights"].items():
        assert torch.allclose(resumed[0]["weights"][name], tensor, atol=1e-5), name
        assert torch.equal(resumed[0]["weights"][name], resumed[1]["weights"][name]), f"ranks disagree on {name}"
    assert resumed[0]["history"][0]["loss"] == pytest.approx(single["history"][1]["loss"], abs=1e-5)

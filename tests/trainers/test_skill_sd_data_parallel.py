"""Skill-SD data-parallel under torchrun, for real: two CPU processes (gloo) each play their share of every step's
tasks (two and one), yet hold the same skill bank after every step, log the same metrics and keep the same
weights as one process playing all of them; a resumed two-rank run restores rank 0's checkpointed bank on both
ranks and goes on exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.torchrun import (
    assert_same_steps,
    assert_same_weights,
    launch_training,
    load_ranks,
    one_and_two_ranks,
    untimed,
)

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")


SCRIPT = """
import json, os, sys, zlib
import torch
import reflectgym
from reflectgym.agents.policy import Generation
from support.torchrun import seed_each_reply
from reflectgym.trainers.skill_sd.trainer import SkillSDConfig, SkillSDTrainer

words = ["once", "twice", "thrice", "often"]
tasks = [{"id": f"t{i}", "prompt": f"Say a, {w}.", "answer": "a"} for i, w in enumerate(words)]
def score(task, answer):  # task t0's groups are all equal: kept for their SD term once t0 has a skill
    return 0.0 if task.id == "t0" else len(answer.strip()) % 3 / 2
env_id = reflectgym.register_task_env("DDPSkillSayA-v0", tasks, score)

class Scribe:
    \"\"\"Writes a skill that names the episode it was shown: the same whichever rank (and batch) asks.\"\"\"
    name = "scribe"
    def generate(self, conversations, sampling):
        texts = [conversation[-1]["content"] for conversation in conversations]
        return [Generation(json.dumps({"success_analysis": f"{text.splitlines()[1]} #{zlib.crc32(text.encode())}",
                                       "golden_workflow": "say a"})) for text in texts]

model, out, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
# 3 tasks a step out of 4 (seeds 8-11: t2, t1, t3, t0; shuffled passes: a step may visit a task twice): rank 0
# plays two, rank 1 one
config = SkillSDConfig(model=model, env_id=env_id, output_dir=out, steps=steps, tasks_per_step=3, train_tasks=4,
                       first_seed=8,
                       group_size=4, lr=3e-3, max_new_tokens=6, minibatch_size=2, sd_coef=0.5, skills_per_task=2,
                       save_every=2, progress=False, device="cpu", seed=1, resume=resume)
trainer = SkillSDTrainer(config, summariser=Scribe())
seed_each_reply(trainer.policy, config.group_size, lambda: trainer.session.step)  # (and by the step)
played, scales, banks = [], [], []
training_sequences = trainer._training_sequences
def recording(groups):  # the tasks this rank played itself, and the GRPO rescaling it used
    played.append(sorted(group[0].seed for group in groups))
    out = training_sequences(groups)
    scales.append(trainer._grpo_scale)
    return out
trainer._training_sequences = recording
after_update = trainer._after_update
def snapshotting(groups):  # the bank after every step
    metrics = after_update(groups)
    banks.append(trainer.bank.to_dict())
    return metrics
trainer._after_update = snapshotting
history = trainer.train()
rank = int(os.environ.get("RANK", "0"))
record = {"weights": trainer.model.state_dict(), "history": history, "banks": banks, "played": played,
          "scales": scales}
torch.save(record, os.path.join(out, f"rank{rank}.pt"))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], list[dict[str, Any]]]:
    """The tiny model, and four steps of it trained by one process and by two ranks."""
    return one_and_two_ranks(tmp_path_factory, "skill-sd-ddp", SCRIPT, steps=4)


@pytest.mark.slow
def test_two_ranks_keep_the_same_bank_and_take_the_same_steps_as_one_process(
    runs: tuple[Path, Path, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, _, single, ranks = runs
    history = single["history"]
    assert all("loss" in step for step in history), "a step without an update: the weights were not tested"
    assert sum(step["skills_added"] for step in history) > 0, "no skill was written"
    assert all(step["skills_chosen"] > 0 and step["taught_sequences"] > 0 for step in history[1:]), "no skill used"
    assert sum(step["skills_credited"] for step in history) > 0, "no skill was credited"
    assert any(scale != 1.0 for scale in single["scales"]), "no all-equal group was kept for its SD term"
    assert all(len(played) == 3 for played in single["played"])
    assert [len(played) for played in ranks[0]["played"]] == [2] * 4, "rank 0 plays two of each step's tasks"
    assert [len(played) for played in ranks[1]["played"]] == [1] * 4, "rank 1 plays the third"
    for step, whole in enumerate(single["played"]):
        assert sorted(ranks[0]["played"][step] + ranks[1]["played"][step]) == whole
    for rank in ranks:
        assert rank["banks"] == single["banks"], "a bank differs from one process's after some step"
        assert rank["scales"] == pytest.approx(single["scales"], abs=1e-12), "the GRPO rescaling is not global"
        assert_same_steps(rank["history"], history)
        assert_same_weights(rank["weights"], single["weights"])
    assert untimed(ranks[0]["history"]) == untimed(ranks[1]["history"]), "metrics are global: every rank logs the same"
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), f"ranks disagree on {name}"


@pytest.mark.slow
def test_two_ranks_resume_with_rank_zeros_checkpointed_bank(
    runs: tuple[Path, Path, dict[str, Any], list[dict[str, Any]]],
) -> None:
    """Rank 0 alone writes the checkpoint; both ranks restore its bank, so steps 3 and 4 (which choose and credit
    from it) go on as in the uninterrupted run."""
    tmp_path, model, _, whole = runs
    launch_training(SCRIPT, model, tmp_path / "resumed", 2, 2)
    launch_training(SCRIPT, model, tmp_path / "resumed", 2, 4, resume=True)
    resumed = load_ranks(tmp_path / "resumed", 2)
    assert whole[0]["history"][2]["skills_chosen"] > 0, "step 3 chose no skill from the restored bank"
    for rank, uninterrupted in zip(resumed, whole, strict=True):
        assert rank["banks"] == uninterrupted["banks"][2:]
        assert_same_steps(rank["history"], uninterrupted["history"][2:])
        assert_same_weights(rank["weights"], uninterrupted["weights"])

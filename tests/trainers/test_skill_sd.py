"""Skill-SD (TRAINERS.md §2): skills and their bank, the teacher's context, and the trainer on a tiny model."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import torch

import reflectgym
from reflectgym.agents.chat import TokenRecord
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Generation, Sampling
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.core import Task
from reflectgym.core.trajectory import Trajectory, Turn
from reflectgym.trainers.batching import TrainingSequence, collate, target_logprobs
from reflectgym.trainers.checkpoint import saved_checkpoints
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.losses import self_distillation_loss
from reflectgym.trainers.registry import trainer_spec
from reflectgym.trainers.rescore import AlignmentError
from reflectgym.trainers.skill_sd import (
    Skill,
    SkillBank,
    Summariser,
    parse_skill,
    summary_conversation,
    teacher_prompt_ids,
    with_teacher_logprobs,
)
from reflectgym.trainers.skill_sd import teacher as teacher_module
from reflectgym.trainers.skill_sd.trainer import SkillSDConfig, SkillSDTrainer, best_episode, task_key

MARKER = "QZXJ-skill-marker"


def share_of_a(task: Task, answer: str) -> float:
    """A toy reward with a gradient: the share of an 8-character reply that is the letter a."""
    return sum(char == "a" for char in answer.strip()) / 8


ENV_ID = reflectgym.register_task_env(
    "SkillSayA-v0",
    [{"id": "first", "prompt": "Say a.", "answer": "aaaaaaaa"}, {"id": "second", "prompt": "Say a!", "answer": "a"}],
    share_of_a,
    max_attempts=1,
)


class ScriptedSummariser:
    """A summariser policy that answers every request with a fixed skill, and remembers its threads."""

    name = "scripted-summariser"

    def __init__(self, reply: str | None = None, fail: bool = False) -> None:
        default = {"success_analysis": f"{MARKER} say a", "mistake_analysis": "other letters", "golden_workflow": "a"}
        self.reply = reply if reply is not None else json.dumps(default)
        self.fail = fail
        self.threads: list[str] = []
        self.requests: list[list[dict[str, str]]] = []

    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        self.threads.append(threading.current_thread().name)
        self.requests += [list(conversation) for conversation in conversations]
        if self.fail:
            raise RuntimeError("summariser down")
        return [Generation(self.reply) for _ in conversations]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("skill-sd") / "model", TinyModelConfig(seed=0))


def config_for(tmp_path: Path, name: str = "run", **overrides: object) -> SkillSDConfig:
    values: dict[str, object] = dict(
        env_id=ENV_ID,
        output_dir=str(tmp_path / name),
        steps=3,
        tasks_per_step=2,
        group_size=4,
        lr=3e-3,
        max_new_tokens=6,
        train_tasks=2,
        sd_coef=0.5,
        save_every=0,
        progress=False,
    )
    values.update(overrides)
    return SkillSDConfig(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- skills
def test_parse_skill_reads_json_fenced_json_and_lists() -> None:
    plain = parse_skill('{"success_analysis": "s", "mistake_analysis": "m", "golden_workflow": "g"}')
    assert plain == Skill("s", "m", "g")
    fenced = parse_skill('Here:\n```json\n{"golden_workflow": ["push up", "push left"]}\n```')
    assert fenced is not None and fenced.golden_workflow == "push up\npush left" and fenced.success_analysis == ""
    assert "Workflow: push up" in fenced.text() and "What worked" not in fenced.text()
    nested = parse_skill('{"result": {"analysis": {"mistake_analysis": "walked into a wall", "other": 1}}}')
    assert nested == Skill(mistake_analysis="walked into a wall")
    trailing = parse_skill('Sure! {"golden_workflow": "push"} and {"x": "}"} done')
    assert trailing == Skill(golden_workflow="push")


@pytest.mark.parametrize(
    "reply", ["no json here", "{not json}", '["a", "list"]', '{"other": "keys"}', '{"success_analysis": ""}']
)
def test_a_reply_without_a_usable_skill_makes_none(reply: str) -> None:
    assert parse_skill(reply) is None


def test_the_bank_tries_untried_skills_first_then_takes_the_upper_bound() -> None:
    bank = SkillBank(capacity=4, exploration=1.0)
    rng = np.random.default_rng(0)
    assert bank.select("t", rng) is None
    bank.add("t", Skill("a"))
    bank.add("t", Skill("b"))
    first = bank.select("t", rng)
    assert first in (0, 1)
    bank.record("t", first, [1.0, 1.0])
    assert bank.select("t", rng) == 1 - first  # the untried one, whatever their means
    bank.record("t", 1 - first, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # N = 8: bound(first) = 1 + sqrt(ln 8 / 2) = 2.02; bound(other) = 0 + sqrt(ln 8 / 6) = 0.59
    assert bank.select("t", rng) == first
    bank.record("t", first, [0.0] * 200)  # mean 2/202 with a narrow bound, against the other's wider one
    total = 208
    bounds = [2 / 202 + np.sqrt(np.log(total) / 202), 0 + np.sqrt(np.log(total) / 6)]
    assert bank.select("t", rng) == [first, 1 - first][int(np.argmax(bounds))] == 1 - first


def test_a_full_bank_evicts_the_tried_skill_with_the_lowest_mean_and_round_trips() -> None:
    bank = SkillBank(capacity=2)
    bank.add("t", Skill("good"))
    bank.add("t", Skill("bad"))
    bank.record("t", 0, [1.0])
    bank.record("t", 1, [0.0])
    bank.add("t", Skill("new"))
    assert [skill.success_analysis for skill in bank.skills["t"]] == ["good", "new"]
    bank.add("u", Skill("x"))
    assert len(bank) == 3
    copy = SkillBank(capacity=2)
    copy.load(json.loads(json.dumps(bank.to_dict())))
    assert copy.to_dict() == bank.to_dict()


def test_summary_conversation_shows_the_task_actions_feedback_and_outcome() -> None:
    turns = [Turn(f"obs {i}", f"action {i}", 0.0, feedback=f"feedback {i}") for i in range(5)]
    trajectory = Trajectory("env", "t", 0, turns=turns)
    text = summary_conversation(trajectory, max_turns=3)[-1]["content"]
    assert text.startswith("Task:\nobs 0") and "not solved" in text and "first 2 steps are left out" in text
    assert "Step 3 action: action 2" in text and "Step 5 feedback: feedback 4" in text and "action 1" not in text
    assert "golden_workflow" in text


def test_a_background_summariser_runs_off_the_calling_thread_and_a_failure_reaches_the_future() -> None:
    policy = ScriptedSummariser()
    summariser = Summariser(policy, Sampling(), background=True)
    episode = Trajectory("env", "t", 0, turns=[Turn("obs", "a", 1.0)])
    summaries = summariser.submit([("t", episode)]).result()
    assert summaries[0].task == "t" and summaries[0].skill is not None
    assert policy.threads == [policy.threads[0]] and policy.threads[0] != threading.current_thread().name
    summariser.close()
    failing = Summariser(ScriptedSummariser(fail=True), Sampling(), background=False)
    with pytest.raises(RuntimeError, match="summariser down"):
        failing.submit([("t", episode)]).result()


def test_the_best_episode_skips_failed_ones_and_tasks_fall_back_to_seeds() -> None:
    good = Trajectory("env", None, 7, turns=[Turn("o", "a", 1.0)])
    failed = Trajectory("env", None, 7, turns=[Turn("o", "a", 5.0)], metadata={"error": "env"})
    assert best_episode([failed, good]) is good and best_episode([failed]) is None
    assert task_key(good) == "seed-7" and task_key(dataclasses.replace(good, task_id="x")) == "x"


# --------------------------------------------------------------------------------------------- teacher
def student_sequence(policy: HFPolicy, observation: str, reply: str) -> TrainingSequence:
    prompt = policy.chat.prompt_ids(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": observation}]
    )
    reply_ids = policy.tokenizer(reply, add_special_tokens=False)["input_ids"]
    ids = (*prompt, *reply_ids)
    return TrainingSequence(
        ids, (0,) * len(prompt) + (1,) * len(reply_ids), (0.0,) * len(prompt) + (-1.0,) * len(reply_ids)
    )


def test_the_teacher_prompt_puts_the_skill_at_the_head_of_the_first_user_message(model_dir: Path) -> None:
    policy = HFPolicy.from_pretrained(model_dir)
    sequence = student_sequence(policy, "Push the box.", "up")
    start = sequence.loss_mask.index(1)
    teacher = teacher_prompt_ids(policy.tokenizer, sequence.input_ids[:start], policy.chat.user_opening(), MARKER)
    text = policy.tokenizer.decode(teacher, skip_special_tokens=False)
    assert text.index("Be brief.") < text.index(MARKER) < text.index("Push the box.")
    assert text.endswith("<|im_start|>assistant\n")
    with pytest.raises(AlignmentError, match="no user message opening"):
        teacher_prompt_ids(policy.tokenizer, sequence.input_ids[:start], "<|nothing|>", MARKER)


def test_teacher_log_probs_under_the_students_own_context_give_zero_loss_and_gradient(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """θ̄ = θ and no skill ⇒ L_SD = 0 and ∇L_SD = 0: the teacher scores exactly the student's tokens at the
    right positions (an off-by-one would leave a large loss)."""
    policy = HFPolicy.from_pretrained(model_dir)
    policy.model.eval()
    sequences = [student_sequence(policy, "Push the box.", "up up"), student_sequence(policy, "Go.", "left")]
    monkeypatch.setattr(teacher_module, "teacher_prompt_ids", lambda tokenizer, prompt, opening, skill: list(prompt))
    taught = with_teacher_logprobs(
        policy.model, policy.tokenizer, sequences, ["s", "s"], user_opening="", pad_id=0, batch_size=1
    )
    assert all(sequence.teacher_logprobs is not None for sequence in taught)
    batch = collate(taught, pad_id=0)
    logprobs = target_logprobs(policy.model, batch.input_ids, batch.attention_mask)
    mask = batch.loss_mask.bool()
    assert torch.allclose(batch.teacher_logprobs[mask], logprobs.detach()[mask], atol=1e-5)
    loss = self_distillation_loss(
        logprobs, batch.old_logprobs, batch.teacher_logprobs, batch.loss_mask, teacher_mask=batch.teacher_mask
    )
    loss.backward()
    assert abs(float(loss.detach())) < 1e-6
    grads = [parameter.grad for parameter in policy.model.parameters() if parameter.grad is not None]
    assert max(float(grad.abs().max()) for grad in grads) < 1e-5
    # and the check can fail: a real skill moves the teacher away from the student
    monkeypatch.undo()
    real = with_teacher_logprobs(
        policy.model,
        policy.tokenizer,
        sequences,
        [MARKER, None],
        user_opening=policy.chat.user_opening(),
        pad_id=0,
        batch_size=4,
    )
    assert real[1].teacher_logprobs is None
    moved = collate(real, pad_id=0)
    assert not torch.allclose(moved.teacher_logprobs[0][mask[0]], logprobs.detach()[0][mask[0]], atol=1e-3)


# --------------------------------------------------------------------------------------------- trainer
def test_config_rejects_bad_values() -> None:
    for bad in ({"sd_coef": -1.0}, {"train_tasks": 0}, {"skills_per_task": 0}, {"summary_turns": 0}):
        with pytest.raises(ConfigError):
            SkillSDConfig(**bad)  # type: ignore[arg-type]
    assert trainer_spec("skill_sd").config is SkillSDConfig


def test_seeds_cycle_through_shuffled_passes_over_the_training_tasks(tmp_path: Path, model_dir: Path) -> None:
    config = config_for(tmp_path, train_tasks=5, tasks_per_step=2, first_seed=100, model=str(model_dir))
    trainer = SkillSDTrainer(config, summariser=ScriptedSummariser())
    first_pass = trainer.seeds_for(0) + trainer.seeds_for(1) + trainer.seeds_for(2)[:1]
    assert sorted(first_pass) == list(range(100, 105))
    assert trainer.seeds_for(2) == SkillSDTrainer(config, summariser=ScriptedSummariser()).seeds_for(2)


def test_students_never_see_a_skill_while_the_teacher_scores_with_it(tmp_path: Path, model_dir: Path) -> None:
    policy = HFPolicy.from_pretrained(model_dir)
    seen: list[str] = []
    generate_ids = policy.generate_ids

    def recording(prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        seen.extend(policy.tokenizer.decode(list(prompt)) for prompt in prompts)
        return generate_ids(prompts, sampling)

    policy.generate_ids = recording  # type: ignore[method-assign]
    summariser = ScriptedSummariser()
    history = SkillSDTrainer(config_for(tmp_path, steps=3), policy, summariser=summariser).train()
    assert seen and not any(MARKER in prompt for prompt in seen)
    assert history[0]["taught_sequences"] == 0  # no skill exists before the first summaries
    assert history[0]["skills_added"] == 2 and history[-1]["skill_bank"] == 6  # 2 tasks, a skill each per step
    assert all(step["taught_sequences"] > 0 and step["sd_loss"] > 0 for step in history[1:])
    assert all(thread != threading.current_thread().name for thread in summariser.threads)  # in the background
    assert "Say a" in summariser.requests[0][-1]["content"]


def test_sd_coef_zero_is_plain_grpo_and_a_positive_one_is_not(tmp_path: Path, model_dir: Path) -> None:
    shared = dict(
        env_id=ENV_ID,
        model=str(model_dir),
        steps=3,
        tasks_per_step=2,
        group_size=4,
        lr=3e-3,
        max_new_tokens=6,
        save_every=0,
        progress=False,
    )
    grpo = GRPOTrainer(GRPOConfig(output_dir=str(tmp_path / "grpo"), **shared))  # type: ignore[arg-type]
    grpo.train()

    def skill_sd(name: str, coef: float) -> dict[str, torch.Tensor]:
        config = SkillSDConfig(output_dir=str(tmp_path / name), sd_coef=coef, train_tasks=None, **shared)  # type: ignore[arg-type]
        trainer = SkillSDTrainer(config, summariser=ScriptedSummariser())
        history = trainer.train()
        assert history[-1]["taught_sequences"] > 0  # the teacher ran in both
        return trainer.model.state_dict()

    expected = grpo.model.state_dict()
    same = skill_sd("zero", 0.0)
    assert all(torch.equal(same[name], expected[name]) for name in expected)
    moved = skill_sd("positive", 5.0)
    assert any(not torch.equal(moved[name], expected[name]) for name in expected)


def test_the_bank_is_checkpointed_and_a_resumed_run_matches_an_uninterrupted_one(
    tmp_path: Path, model_dir: Path
) -> None:
    """With the trained policy as its own summariser (the default): the tiny model writes no JSON, which costs
    the step its skills (counted), not the run; the bank's state still resumes exactly."""
    whole = SkillSDTrainer(config_for(tmp_path, "whole", steps=4, save_every=2, model=str(model_dir)))
    history = whole.train()
    assert sum(step["skills_unparsed"] for step in history) == 8
    scripted = ScriptedSummariser()
    straight = SkillSDTrainer(config_for(tmp_path, "straight", steps=4, model=str(model_dir)), summariser=scripted)
    straight.train()
    cut = SkillSDTrainer(config_for(tmp_path, "cut", steps=2, save_every=2, model=str(model_dir)), summariser=scripted)
    cut.train()
    state = json.loads((saved_checkpoints(tmp_path / "cut")[-1] / "trainer_state.json").read_text())
    assert sum(len(skills) for skills in state["skills"].values()) == 4
    resumed = SkillSDTrainer(
        config_for(tmp_path, "cut", steps=4, resume=True, model=str(model_dir)), summariser=scripted
    )
    resumed.train()
    assert resumed.bank.to_dict() == straight.bank.to_dict()
    expected = straight.model.state_dict()
    assert all(torch.allclose(resumed.model.state_dict()[name], expected[name]) for name in expected)


def test_a_failing_summariser_costs_its_skills_not_the_run(tmp_path: Path, model_dir: Path) -> None:
    trainer = SkillSDTrainer(config_for(tmp_path, model=str(model_dir)), summariser=ScriptedSummariser(fail=True))
    with pytest.warns(UserWarning, match="summariser failed"):
        history = trainer.train()
    assert len(history) == 3 and history[-1]["skill_bank"] == 0


def test_token_records_are_what_the_teacher_splices(tmp_path: Path, model_dir: Path) -> None:
    """Teacher and student score identical token ids: every taught sequence's tokens from its first sampled one
    on are the student's record, and its teacher log-probs sit only on sampled tokens."""
    trainer = SkillSDTrainer(config_for(tmp_path, steps=1, model=str(model_dir)), summariser=ScriptedSummariser())
    trainer.bank.add("first", Skill(MARKER))
    trainer.bank.add("second", Skill(MARKER))
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    sequences, counts = trainer._training_sequences(groups)
    assert counts["taught_sequences"] == len(sequences) > 0
    records = {tuple(record.input_ids) for group in groups for t in group for record in TokenRecord.segments_of(t)}
    for sequence in sequences:
        assert sequence.input_ids in records and sequence.teacher_logprobs is not None
        pairs = list(zip(sequence.teacher_logprobs, sequence.loss_mask, strict=True))
        assert all(lp == 0.0 for lp, mask in pairs if not mask) and all(lp < 0.0 for lp, mask in pairs if mask)
    trainer.summariser.close()

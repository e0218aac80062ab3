"""Skill-SD (TRAINERS.md §2): skills and their bank, the teacher's context, and the trainer on a tiny model."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import torch

import reflectgym
from reflectgym.agents.chat import ChatFormat, TokenRecord
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
from reflectgym.trainers.skill_sd import (
    Skill,
    SkillBank,
    Summariser,
    parse_skill,
    summary_conversation,
    teacher_prompts,
)
from reflectgym.trainers.skill_sd import teacher as teacher_module
from reflectgym.trainers.skill_sd.trainer import SkillSDConfig, SkillSDTrainer, best_episode, task_key

MARKER = "QZXJ-skill-marker"


def share_of_a(task: Task, answer: str) -> float:
    """A toy reward with a gradient: the share of an 8-character reply that is the letter a."""
    return sum(char == "a" for char in answer.strip()) / 8


RETRY_ID = reflectgym.register_task_env(
    "SkillSayARetry-v0", [{"id": "only", "prompt": "Say a, three times.", "answer": "-"}], lambda task, answer: 0.0,
    max_attempts=3,
)  # fmt: skip
"""Every attempt fails: three-turn episodes, each turn answered with feedback."""

ENV_ID = reflectgym.register_task_env(
    "SkillSayA-v0",
    [{"id": "first", "prompt": "Say a.", "answer": "aaaaaaaa"}, {"id": "second", "prompt": "Say a!", "answer": "a"}],
    share_of_a,
    max_attempts=1,
)

MANY_ID = reflectgym.register_task_env(
    "SkillSayAMany-v0", [{"id": f"level-{i}", "prompt": f"Say a, {i}.", "answer": "a"} for i in range(64)], share_of_a
)
"""Many levels, each picked by a fresh seed: task keys that hardly come back, as with procedurally generated ones."""


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
    assert bank.choose("t", rng) is None
    a, b = Skill("a"), Skill("b")
    bank.add("t", a)
    bank.add("t", b)
    first = bank.choose("t", rng)
    assert first in (a, b) and bank.pending["t"] is first
    bank.credit("t", [1.0, 1.0])  # the next visit's returns go to the skill chosen at the last one
    assert first is not None and first.uses == 2 and "t" not in bank.pending
    other = bank.choose("t", rng)
    assert other is not first  # the untried one, whatever their means
    bank.credit("t", [0.0] * 6)
    # N = 8: bound(first) = 1 + sqrt(ln 8 / 2) = 2.02; bound(other) = 0 + sqrt(ln 8 / 6) = 0.59
    assert bank.choose("t", rng) is first
    bank.credit("t", [0.0] * 200)  # mean 2/202 with a narrow bound, against the other's wider one
    bounds = [2 / 202 + np.sqrt(np.log(208) / 202), 0 + np.sqrt(np.log(208) / 6)]
    assert int(np.argmax(bounds)) == 1 and bank.choose("t", rng) is other


def test_a_task_wants_a_new_skill_only_when_none_waits_and_then_only_to_beat_the_bank() -> None:
    bank = SkillBank(capacity=2)
    rng = np.random.default_rng(0)
    assert bank.wants_skill("t", 0.0)  # room, nothing untried
    bank.add("t", Skill("a"))
    assert not bank.wants_skill("t", 0.0)  # "a" waits its turn
    bank.choose("t", rng)
    assert bank.wants_skill("t", 0.0)  # "a" is pending now
    bank.add("t", Skill("b"))
    bank.credit("t", [0.5])
    bank.choose("t", rng)  # "b", untried
    bank.credit("t", [0.25])
    assert not bank.wants_skill("t", 0.5) and bank.wants_skill("t", 0.6)  # full: only past the best mean, 0.5
    bank.choose("t", rng)
    bank.add("t", Skill("c"))  # evicts the credited skill with the lowest mean ("b"), never the pending one
    assert [skill.success_analysis for skill in bank.skills["t"]] == ["a", "c"]


def test_a_full_bank_evicts_the_credited_skill_with_the_lowest_mean_and_round_trips() -> None:
    bank = SkillBank(capacity=2)
    rng = np.random.default_rng(1)
    bank.add("t", Skill("good"))
    bank.add("t", Skill("bad"))
    bank.skills["t"][0].uses, bank.skills["t"][0].reward_sum = 1, 1.0
    bank.skills["t"][1].uses = 1
    bank.add("t", Skill("new"))
    assert [skill.success_analysis for skill in bank.skills["t"]] == ["good", "new"]
    bank.add("u", Skill("x"))
    bank.choose("u", rng)
    assert len(bank) == 3
    copy = SkillBank(capacity=2)
    copy.load(json.loads(json.dumps(bank.to_dict())))
    assert copy.to_dict() == bank.to_dict() and copy.pending["u"] is copy.skills["u"][0]


def test_a_new_task_beyond_the_bound_evicts_the_least_recently_visited_and_a_visit_refreshes() -> None:
    bank = SkillBank(capacity=2, max_tasks=2)
    rng = np.random.default_rng(0)
    bank.add("a", Skill("a"))
    bank.add("b", Skill("b"))
    bank.choose("a", rng)  # a visit: "a" is now more recent than "b"
    bank.add("c", Skill("c"))
    assert list(bank.skills) == ["a", "c"]
    bank.add("a", Skill("a2"))  # a new skill is a visit too
    bank.add("d", Skill("d"))
    assert list(bank.skills) == ["a", "d"] and [skill.success_analysis for skill in bank.skills["a"]] == ["a", "a2"]
    bank.choose("a", rng)
    bank.add("a", Skill("a3"))  # a task already banked takes no other task's place
    assert list(bank.skills) == ["d", "a"] and len(bank) == 3


def test_the_bound_holds_over_many_task_keys_that_never_come_back() -> None:
    bank = SkillBank(capacity=2, max_tasks=8)
    rng = np.random.default_rng(0)
    for index in range(500):  # the trainer's order: credit and choose at the visit, a skill after the update
        task = f"seed-{index}"
        bank.credit(task, [1.0])
        assert bank.choose(task, rng) is None
        if bank.wants_skill(task, 1.0):
            bank.add(task, Skill(task))
        assert len(bank.skills) <= 8
    assert list(bank.skills) == [f"seed-{index}" for index in range(492, 500)] and len(bank) == 8
    assert len(json.dumps(bank.to_dict())) < 2000


def test_an_evicted_tasks_pending_skill_is_dropped_and_its_return_credits_nothing() -> None:
    bank = SkillBank(capacity=2, max_tasks=1)
    rng = np.random.default_rng(0)
    bank.add("a", Skill("a"))
    chosen = bank.choose("a", rng)
    assert chosen is not None and bank.pending == {"a": chosen}
    bank.add("b", Skill("b"))  # "a" goes, its uncredited skill with it
    assert list(bank.skills) == ["b"] and bank.pending == {}
    bank.credit("a", [1.0])  # "a" comes back after all: nothing to credit, no error
    assert chosen.uses == 0 and bank.choose("a", rng) is None and bank.wants_skill("a", 0.0)
    assert bank.to_dict()["pending"] == {}
    bank.choose("b", rng)
    bank.add("c", Skill("c"))
    assert bank.pending == {} and json.loads(json.dumps(bank.to_dict()))["order"] == ["c"]


def test_the_bank_round_trips_its_eviction_order() -> None:
    bank = SkillBank(capacity=2, max_tasks=3)
    rng = np.random.default_rng(0)
    for task in "abc":
        bank.add(task, Skill(task))
    bank.choose("a", rng)  # recency, least first: b, c, a
    state = json.loads(json.dumps(bank.to_dict(), sort_keys=True))  # key order lost: only `order` keeps it
    copy = SkillBank(capacity=2, max_tasks=3)
    copy.load(state)
    assert list(copy.skills) == ["b", "c", "a"] and copy.to_dict() == bank.to_dict()
    for each in (bank, copy):
        each.add("d", Skill("d"))
    assert list(copy.skills) == list(bank.skills) == ["c", "a", "d"] and copy.to_dict() == bank.to_dict()
    smaller = SkillBank(capacity=2, max_tasks=2)
    smaller.load(state)  # a resume with a smaller bound keeps the most recent tasks
    assert list(smaller.skills) == ["c", "a"] and smaller.pending["a"] is smaller.skills["a"][0]
    legacy = SkillBank(capacity=2)
    legacy.load({key: value for key, value in bank.to_dict().items() if key != "order"})
    assert list(legacy.skills) == ["c", "a", "d"]


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
GEMMA_LIKE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.mark.parametrize("history_turns", [None, 1, 0])
@pytest.mark.parametrize("template", ["chatml", "no-system-role"])
def test_every_context_the_student_sampled_in_gets_a_teacher_prompt_with_the_skill(
    tmp_path: Path, model_dir: Path, history_turns: int | None, template: str
) -> None:
    """Rendered again from the episode's messages, every student prompt is found (multi-turn episodes, history
    windows, a template without a system role), and its teacher prompt holds the skill before the observation."""
    policy = HFPolicy.from_pretrained(model_dir)
    if template == "no-system-role":
        policy.tokenizer.chat_template = GEMMA_LIKE
        policy.chat = ChatFormat(policy.tokenizer)
    config = config_for(tmp_path, env_id=RETRY_ID, history_turns=history_turns, max_new_tokens=3)
    trainer = SkillSDTrainer(config, policy, summariser=ScriptedSummariser())
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    assert max(len(t.turns) for group in groups for t in group) == 3  # the toy's three attempts
    for trajectory in (t for group in groups for t in group):
        prompts = teacher_prompts(trajectory, policy.chat, trainer._system, history_turns, MARKER)
        records = TokenRecord.segments_of(trajectory)
        assert len(records) == (1 if history_turns is None else len(trajectory.turns))
        for record, turn in zip(records, trajectory.turns, strict=False):
            student = record.input_ids[: record.loss_mask.index(1)]
            text = policy.tokenizer.decode(prompts[student])
            observation = trajectory.turns[0].observation if history_turns is None else turn.observation
            assert MARKER not in policy.tokenizer.decode(student)
            assert text.index(MARKER) < text.rindex(observation.strip().splitlines()[0])
    trainer.summariser.close()


def test_a_seeded_summary_puts_back_the_generator_of_every_gpu_that_samples(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default summariser (the trained policy) seeds torch, and `torch.manual_seed` reseeds every GPU's
    generator: the generators of the policy's GPU ("cuda": the current one) and of an `hf` sampler's own GPU are
    saved and put back around it (recorded here, on a CPU machine)."""
    trainer = SkillSDTrainer(config_for(tmp_path, model=str(model_dir)), sampler=HFPolicy.from_pretrained(model_dir))
    trainer.policy.device, trainer.sampler.device = torch.device("cuda"), torch.device("cuda:1")  # type: ignore[union-attr]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    forked: list[list[int]] = []

    @contextlib.contextmanager
    def fork_rng(devices: list[int]) -> Iterator[None]:
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    trainer._start_summaries([], [])
    assert forked == [[0, 1]]
    trainer.summariser.close()


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_teacher_log_probs_under_the_students_own_context_give_zero_loss_and_gradient(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, temperature: float
) -> None:
    """θ̄ = θ and no skill ⇒ L_SD = 0 and ∇L_SD = 0, through the trainer on multi-turn episodes with a history
    window: the teacher scores exactly the student's tokens at the right positions (an off-by-one would leave a
    large loss), at the student's sampling temperature."""
    config = config_for(
        tmp_path, env_id=RETRY_ID, history_turns=1, max_new_tokens=3, model=str(model_dir), temperature=temperature
    )
    trainer = SkillSDTrainer(config, summariser=ScriptedSummariser())
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    trainer.bank.add(task_key(groups[0][0]), Skill(MARKER))
    trainer.bank.add(task_key(groups[1][0]), Skill(MARKER))
    monkeypatch.setattr(teacher_module, "with_skill", lambda messages, skill: list(messages))
    sequences, counts = trainer._training_sequences(groups)
    assert counts["taught_sequences"] == len(sequences) > 2 and counts["teacher_unplaced"] == 0
    model = trainer.model
    batch = collate(sequences, pad_id=trainer.session.pad_id)
    logprobs = target_logprobs(model, batch.input_ids, batch.attention_mask, temperature=temperature)
    mask = batch.loss_mask.bool()
    assert torch.allclose(batch.teacher_logprobs[mask], logprobs.detach()[mask], atol=1e-5)
    assert torch.allclose(batch.old_logprobs[mask], logprobs.detach()[mask], atol=1e-4)  # the sampler's too
    loss = self_distillation_loss(
        logprobs, batch.old_logprobs, batch.teacher_logprobs, batch.loss_mask, teacher_mask=batch.teacher_mask
    )
    loss.backward()
    assert abs(float(loss.detach())) < 1e-6
    grads = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
    assert max(float(grad.abs().max()) for grad in grads) < 1e-5
    # and the check can fail: a real skill moves the teacher away from the student
    monkeypatch.undo()
    trainer.bank.pending.clear()
    taught, _ = trainer._training_sequences(groups)
    moved = collate(taught, pad_id=trainer.session.pad_id)
    assert not torch.allclose(moved.teacher_logprobs[mask], logprobs.detach()[mask], atol=1e-3)
    trainer.summariser.close()


def test_a_prompt_the_template_does_not_render_again_gets_no_teacher_and_is_counted(
    tmp_path: Path, model_dir: Path
) -> None:
    trainer = SkillSDTrainer(config_for(tmp_path, model=str(model_dir)), summariser=ScriptedSummariser())
    trainer._system = "another system prompt than the rollouts had"
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    for group in groups:
        trainer.bank.add(task_key(group[0]), Skill(MARKER))
    with pytest.warns(UserWarning, match="teacher_unplaced"):
        sequences, counts = trainer._training_sequences(groups)
    assert counts["taught_sequences"] == 0 and counts["teacher_unplaced"] == len(sequences) > 0
    assert all(sequence.teacher_logprobs is None for sequence in sequences)
    trainer.summariser.close()


# --------------------------------------------------------------------------------------------- trainer
def test_config_rejects_bad_values() -> None:
    bad_values: list[dict[str, object]] = [
        {"sd_coef": -1.0},
        {"train_tasks": 0},
        {"skills_per_task": 0},
        {"summary_turns": 0},
        {"max_banked_tasks": 0, "train_tasks": None},
        {"max_banked_tasks": 50, "train_tasks": 96},  # tasks evicted before they come back
    ]
    for bad in bad_values:
        with pytest.raises(ConfigError):
            SkillSDConfig(**bad)  # type: ignore[arg-type]
    assert SkillSDConfig(max_banked_tasks=None).max_banked_tasks is None
    assert SkillSDConfig(max_banked_tasks=1, train_tasks=None).max_banked_tasks == 1
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
    """λ = 0 is GRPO weight for weight. So is λ > 0 while no skill exists: the default summariser (the trained
    policy, whose tiny model writes no JSON) samples with torch's generator saved and put back, so the rollouts
    stay GRPO's. With skills, λ > 0 moves the weights."""
    shared = dict(
        env_id=ENV_ID, model=str(model_dir), steps=3, tasks_per_step=2, group_size=4, lr=3e-3, max_new_tokens=6,
        save_every=0, progress=False,
    )  # fmt: skip
    grpo = GRPOTrainer(GRPOConfig(output_dir=str(tmp_path / "grpo"), **shared))  # type: ignore[arg-type]
    grpo_rewards = [step["reward"] for step in grpo.train()]
    expected = grpo.model.state_dict()

    def skill_sd(name: str, coef: float, summariser: ScriptedSummariser | None = None) -> SkillSDTrainer:
        config = SkillSDConfig(output_dir=str(tmp_path / name), sd_coef=coef, train_tasks=None, **shared)  # type: ignore[arg-type]
        trainer = SkillSDTrainer(config, summariser=summariser)
        history = trainer.train()
        assert [step["reward"] for step in history] == grpo_rewards or summariser is not None
        assert sum(step.get("skills_unparsed", 0.0) for step in history) == (6 if coef and not summariser else 0)
        return trainer

    for trainer in (skill_sd("zero", 0.0), skill_sd("no-skills", 0.5)):
        weights = trainer.model.state_dict()
        assert all(torch.equal(weights[name], expected[name]) for name in expected)
    moved = skill_sd("positive", 5.0, ScriptedSummariser()).model.state_dict()
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
    assert sum(len(skills) for skills in state["skills"]["skills"].values()) == 4
    resumed = SkillSDTrainer(
        config_for(tmp_path, "cut", steps=4, resume=True, model=str(model_dir)), summariser=scripted
    )
    resumed.train()
    assert resumed.bank.to_dict() == straight.bank.to_dict()
    expected = straight.model.state_dict()
    assert all(torch.allclose(resumed.model.state_dict()[name], expected[name]) for name in expected)


def test_a_bounded_bank_evicts_levels_that_do_not_come_back_and_resumes_exactly(
    tmp_path: Path, model_dir: Path
) -> None:
    """Fresh seeds over many levels (`train_tasks: None`): the bank never holds more than `max_banked_tasks`
    levels, and a run resumed with a full bank evicts in the same order as an uninterrupted one (3 steps: with 2
    new levels a step, a bank of 3 has forgotten a wrong order again after 2 steps)."""
    scripted = ScriptedSummariser()

    def config(name: str, **overrides: object) -> SkillSDConfig:
        return config_for(
            tmp_path, name, env_id=MANY_ID, train_tasks=None, max_banked_tasks=3, model=str(model_dir), **overrides
        )

    straight = SkillSDTrainer(config("straight", steps=3), summariser=scripted)
    history = straight.train()
    assert [step["skill_bank_tasks"] for step in history] == [2, 3, 3]
    assert sum(step["skills_added"] for step in history) == 6  # 6 levels, one skill each: 3 evicted
    SkillSDTrainer(config("cut", steps=2, save_every=2), summariser=scripted).train()
    resumed = SkillSDTrainer(config("cut", steps=3, resume=True), summariser=scripted)
    resumed.train()
    assert resumed.bank.to_dict()["order"] == straight.bank.to_dict()["order"]
    assert resumed.bank.to_dict() == straight.bank.to_dict()


def test_a_failing_summariser_costs_its_skills_not_the_run(tmp_path: Path, model_dir: Path) -> None:
    trainer = SkillSDTrainer(config_for(tmp_path, model=str(model_dir)), summariser=ScriptedSummariser(fail=True))
    with pytest.warns(UserWarning, match="summariser failed"):
        history = trainer.train()
    assert len(history) == 3 and history[-1]["skill_bank"] == 0


def test_the_grpo_term_keeps_its_mean_over_groups_with_signal(tmp_path: Path, model_dir: Path) -> None:
    """All-equal groups kept for the SD term add tokens with advantage 0: the GRPO term is scaled back to a mean
    over the other groups' tokens (10 tokens in all, 6 with signal)."""
    trainer = SkillSDTrainer(config_for(tmp_path, model=str(model_dir)), summariser=ScriptedSummariser())
    groups = [
        [Trajectory("e", "a", 0, turns=[Turn("o", "x", reward)]) for reward in (1.0, 0.0)],
        [Trajectory("e", "b", 1, turns=[Turn("o", "x", 0.0)]) for _ in range(2)],
    ]
    sequences = [
        *(TrainingSequence((1, 2, 3, 4), (0, 1, 1, 1), (0.0,) * 4, advantage=1.0, group=0) for _ in range(2)),
        *(TrainingSequence((1, 2, 3), (0, 1, 1), (0.0,) * 3, advantage=0.0, group=1) for _ in range(2)),
    ]
    assert trainer._grpo_rescale(groups, sequences, {1}) == pytest.approx(10 / 6)
    assert trainer._grpo_rescale(groups, sequences[:2], {0}) == 1.0  # group 0 has signal: nothing to undo
    trainer.summariser.close()

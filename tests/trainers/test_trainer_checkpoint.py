"""Checkpoints: atomic writes, exact resume of weights, optimizer and every RNG, pruning."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")

from reflectgym.trainers.checkpoint import (  # noqa: E402
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from reflectgym.trainers.metrics import MetricsLogger, read_metrics  # noqa: E402


def make(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object) -> float:
    inputs = torch.randn(16, 4) + float(np.random.rand()) + random.random()
    loss = (model(inputs) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()  # type: ignore[attr-defined]
    return loss.item()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    random.seed(0)
    np.random.seed(0)
    model, optimizer, scheduler = make(0)
    for _ in range(3):
        train_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, 3, model=model, optimizer=optimizer, scheduler=scheduler, trainer_state={"position": 7})
    expected = [train_step(model, optimizer, scheduler) for _ in range(3)]

    fresh, fresh_optimizer, fresh_scheduler = make(123)  # different init: everything must come from the file
    random.seed(99)
    state = load_checkpoint(
        latest_checkpoint(tmp_path), model=fresh, optimizer=fresh_optimizer, scheduler=fresh_scheduler
    )
    assert state == {"step": 3, "position": 7}
    resumed = [train_step(fresh, fresh_optimizer, fresh_scheduler) for _ in range(3)]
    assert resumed == expected


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    model, optimizer, _ = make(0)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model=model, optimizer=optimizer, keep=2)
    names = sorted(path.name for path in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-00000002", "step-00000003"]
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_half_written_checkpoint_is_never_latest(tmp_path: Path) -> None:
    model, optimizer, _ = make(0)
    save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer)
    (tmp_path / "checkpoints" / ".tmp-step-00000002-999").mkdir()  # what a SIGKILL mid-write leaves
    assert latest_checkpoint(tmp_path).name == "step-00000001"


def test_metrics_jsonl_survives_a_torn_last_line(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, config={"lr": 1e-3})
    logger.log(1, {"reward": 0.5})
    logger.log(2, {"reward": 0.75, "loss": float("nan")})
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 3, "rew')
    logger.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2] and records[1]["reward"] == 0.75
    assert (tmp_path / "config.json").exists()


def test_a_resumed_run_drops_the_rows_of_the_steps_it_runs_again(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path)
    for step in range(1, 6):  # checkpointed at step 3, killed after step 5 was logged
        logger.log(step, {"loss": float(step)})
    logger.close()
    resumed = MetricsLogger(tmp_path, resumed_at=3)
    resumed.log(4, {"loss": 40.0})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_a_resumed_runs_clock_goes_on_from_its_last_row(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "time": 100.0, "loss": 1.0}\n')
    logger = MetricsLogger(tmp_path, resumed_at=1)
    logger.log(2, {"loss": 0.5})
    logger.close()
    assert read_metrics(tmp_path)[1]["time"] >= 100.0


def test_hugging_face_model_round_trips_with_tied_embeddings(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 64, (2, 8))
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    path = save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer)
    assert (path / "model" / "config.json").exists(), "the model folder loads with from_pretrained"

    torch.manual_seed(1)
    fresh = transformers.LlamaForCausalLM(config)
    load_checkpoint(path, model=fresh, optimizer=torch.optim.AdamW(fresh.parameters(), lr=1e-3))
    for (name, expected), (_, actual) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(expected, actual), name
    assert fresh.lm_head.weight.data_ptr() == fresh.model.embed_tokens.weight.data_ptr()
    reloaded = transformers.LlamaForCausalLM.from_pretrained(path / "model")
    assert torch.equal(reloaded(tokens).logits, model(tokens).logits)


def test_each_rank_gets_its_own_generators_back_when_the_world_size_is_unchanged(tmp_path: Path) -> None:
    model, optimizer, _ = make(0)
    states = []
    for rank in range(2):
        torch.manual_seed(100 + rank)
        np.random.seed(100 + rank)
        random.seed(100 + rank)
        states.append(capture_rng_state())
    folder = save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer, rng_states=states)

    def first_draws() -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()

    expected = []
    for state in states:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        expected.append(first_draws())
    load_checkpoint(folder, model=model, rank=1, world_size=2)
    assert first_draws() == expected[1]
    load_checkpoint(folder, model=model, rank=1, world_size=3)  # another world size: the first rank's
    assert first_draws() == expected[0]


def test_generators_of_gpus_not_visible_now_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint saved with two GPUs visible resumes where one is: `torch.cuda.set_rng_state` of a GPU this
    process lacks is an IndexError (`default_generators[1]`), so only the visible GPUs' states are restored."""
    state = {**capture_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    restored: list[int] = []

    def set_rng_state(new_state: torch.Tensor, device: int) -> None:  # as torch's: the GPU's default generator
        if device >= torch.cuda.device_count():
            raise IndexError("tuple index out of range")
        restored.append(int(new_state.sum()))

    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    restore_rng_state(state)
    assert restored == [0]


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    model, optimizer, _ = make(0)
    for step in (3, 4, 1):  # an older run's step-3/4 sort after the new step-1
        save_checkpoint(tmp_path, step, model=model, optimizer=optimizer, keep=2)
    assert latest_checkpoint(tmp_path).name == "step-00000001"


def test_a_fresh_run_refuses_a_folder_with_an_earlier_runs_checkpoints(tmp_path: Path) -> None:
    from reflectgym.trainers.checkpoint import CheckpointError
    from reflectgym.trainers.session import TrainerConfig, checkpoint_to_resume, clear_earlier_run

    model, optimizer, _ = make(0)
    save_checkpoint(tmp_path, 4, model=model, optimizer=optimizer)
    with pytest.raises(CheckpointError, match=r"--resume true.*--overwrite-output-dir true"):
        checkpoint_to_resume(TrainerConfig(output_dir=str(tmp_path)))
    assert checkpoint_to_resume(TrainerConfig(output_dir=str(tmp_path), resume=True)).name == "step-00000004"
    assert checkpoint_to_resume(TrainerConfig(output_dir=str(tmp_path), overwrite_output_dir=True)) is None
    assert (tmp_path / "checkpoints" / "step-00000004").is_dir()  # deleted only when the run begins
    clear_earlier_run(tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_resume_from_a_latest_pointer_to_a_missing_checkpoint_fails_loudly(tmp_path: Path) -> None:
    from reflectgym.trainers.checkpoint import CheckpointError
    from reflectgym.trainers.session import TrainerConfig, checkpoint_to_resume

    model, optimizer, _ = make(0)
    save_checkpoint(tmp_path, 3, model=model, optimizer=optimizer)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000009")
    with pytest.raises(CheckpointError, match=r"'step-00000009', which is missing.*step-00000003"):
        checkpoint_to_resume(TrainerConfig(output_dir=str(tmp_path), resume=True))
    assert checkpoint_to_resume(TrainerConfig(output_dir=str(tmp_path / "new"), resume=True)) is None

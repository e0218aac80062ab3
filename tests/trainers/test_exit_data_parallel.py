"""ExIt data-parallel under torchrun, for real: two CPU processes (gloo) each play their share of every step's
slots, yet hold the same buffer and weights at every step as one process playing all of them, and a resumed
two-rank run restores rank 0's checkpointed buffer on both ranks and goes on exactly."""

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
import os, sys
import torch
import reflectgym
from support.torchrun import seed_each_reply
from reflectgym.trainers.exit import ExItConfig, ExItTrainer

tasks = [{"id": f"t{i}", "prompt": f"Say {w}.", "answer": w} for i, w in enumerate(["yes", "no", "maybe", "sure"])]
env_id = reflectgym.register_task_env(
    "DDPExIt-v0", tasks, lambda task, answer: min(len(answer.strip()), 6) / 6, max_attempts=3
)
model, out, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
config = ExItConfig(model=model, env_id=env_id, output_dir=out, steps=steps, tasks_per_step=4, group_size=4, lr=3e-3,
                    max_new_tokens=6, minibatch_size=2, save_every=0, progress=False, device="cpu", system_prompt="",
                    select_prob=0.75, diverge_prob=0.5, min_buffer=2, buffer_size=6, num_envs=1, seed=2, resume=resume)
trainer = ExItTrainer(config)
seed_each_reply(trainer.policy, config.group_size)  # (the same reply whichever rank samples it)
played, buffers = [], []
play_share = trainer.play_share
def recording(step):  # the slots this rank played itself
    results, sequences = play_share(step)
    played.append([result.index for result in results if result.slot is not None])
    return results, sequences
trainer.play_share = recording
update_buffer = trainer.update_buffer
def snapshotting(results):  # the buffer after every step's update
    metrics = update_buffer(results)
    buffers.append(trainer.buffer.state())
    return metrics
trainer.update_buffer = snapshotting
history = trainer.train()
rank = int(os.environ.get("RANK", "0"))
record = {"weights": trainer.model.state_dict(), "history": history, "buffers": buffers, "played": played}
torch.save(record, os.path.join(out, f"rank{rank}.pt"))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], list[dict[str, Any]]]:
    """The tiny model, and three steps of it trained by one process and by two ranks."""
    return one_and_two_ranks(tmp_path_factory, "exit-ddp", SCRIPT, steps=3)


@pytest.mark.slow
def test_two_ranks_play_their_share_and_take_the_same_steps_as_one_process(
    runs: tuple[Path, Path, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, _, single, ranks = runs
    history = single["history"]
    assert all("loss" in step for step in history), "a step without an update: the weights were not tested"
    assert any(0 < step["from_buffer"] < 1 for step in history), "no step mixed new tasks and buffer instances"
    assert any(step["diverge"] > 0 for step in history), "no slot was prompted to diverge"
    assert history[-1]["buffer_size"] == 6, "the buffer never filled: eviction was not tested"
    assert single["played"] == [[0, 1, 2, 3]] * 3
    assert ranks[0]["played"] == [[0, 2]] * 3 and ranks[1]["played"] == [[1, 3]] * 3, "each rank plays its share"
    for rank in ranks:
        assert rank["buffers"] == single["buffers"], "a buffer differs from one process's after some step"
        assert_same_steps(rank["history"], history)
        assert_same_weights(rank["weights"], single["weights"])
    assert untimed(ranks[0]["history"]) == untimed(ranks[1]["history"]), "metrics are global: every rank logs the same"
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), f"ranks disagree on {name}"


@pytest.mark.slow
def test_two_ranks_resume_with_rank_zeros_checkpointed_buffer(
    runs: tuple[Path, Path, dict[str, Any], list[dict[str, Any]]],
) -> None:
    """Rank 0 alone writes the checkpoint; both ranks restore its buffer, so step 3 (which draws from it) goes on as
    in the uninterrupted run."""
    tmp_path, model, _, whole = runs
    launch_training(SCRIPT, model, tmp_path / "resumed", 2, 2)
    launch_training(SCRIPT, model, tmp_path / "resumed", 2, 3, resume=True)
    resumed = load_ranks(tmp_path / "resumed", 2)
    assert whole[0]["history"][2]["from_buffer"] > 0, "step 3 did not draw from the restored buffer"
    for rank, uninterrupted in zip(resumed, whole, strict=True):
        assert rank["buffers"] == uninterrupted["buffers"][2:]
        assert_same_steps(rank["history"], uninterrupted["history"][2:])
        assert_same_weights(rank["weights"], uninterrupted["weights"])

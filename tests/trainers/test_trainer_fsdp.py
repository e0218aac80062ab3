"""Fully sharded training (`fsdp: true`) under torchrun, for real: two CPU processes (gloo) shard the tiny model with
FSDP2 and take the same steps as one process on the whole batch; checkpoints of sharded and unsharded runs resume
from each other's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.torchrun import assert_same_steps, load_ranks, run_ranks

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model  # noqa: E402
from reflectgym.trainers.config import ConfigError  # noqa: E402
from reflectgym.trainers.session import TrainerConfig  # noqa: E402
from reflectgym.trainers.sharding import load_optimizer_state, shard  # noqa: E402

SCRIPT = """
import os, sys
import torch
import reflectgym
from support.torchrun import seed_each_reply
from reflectgym.agents.policy import Sampling
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.rltf import RLTFConfig, RLTFTrainer

tasks = [{"id": f"t{i}", "prompt": f"Say {w}.", "answer": w} for i, w in enumerate(["yes", "no", "maybe"])]
env_id = reflectgym.register_task_env("FSDPToy-v0", tasks, lambda task, answer: min(len(answer), 6) / 6)
model, out, trainer, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
resume, fsdp = sys.argv[5] == "resume", sys.argv[6] == "fsdp"
shared = dict(model=model, output_dir=out, steps=steps, lr=1e-2, progress=False, fsdp=fsdp, resume=resume)
if trainer == "rltf":  # greedy; the critiques' targets are scored by the gathered model
    revise_id = reflectgym.register_task_env("FSDPRevise-v0", tasks, lambda task, answer: sum(answer.encode()) % 5 / 4,
                                             max_attempts=2)
    config = RLTFConfig(env_id=revise_id, env_kwargs={}, tasks_per_step=2, group_size=4, temperature=0.0,
                        max_new_tokens=6, minibatch_size=2, save_every=0, fm_coef=0.5,
                        sd_logprob_floor=float("-inf"), **shared)
    run = RLTFTrainer(config)
else:  # a KL reference (a copy of the model as it starts), sampling at a temperature by a separate copy sent the
    # gathered weights after each update, a checkpoint every step; three tasks a step: rank 0 samples twice as many
    # replies as rank 1
    config = GRPOConfig(env_id=env_id, tasks_per_step=3, group_size=4, max_new_tokens=6, minibatch_size=2,
                        save_every=1, drop_zero_variance_groups=False, kl_coef=0.1, temperature=0.7, sampler="hf",
                        **shared)
    run = GRPOTrainer(config)
    seed_each_reply(run.sampler, config.group_size, lambda: run.step)
history = run.train()
trained = [p for group in run.session.optimizer.param_groups for p in group["params"]]  # (what the update stepped)
local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in trained)
after = run.policy.generate_ids([[5, 6, 7]], Sampling(temperature=0.0, max_new_tokens=4))[0].token_ids
record = {"history": history, "local_numel": local, "numel": sum(p.numel() for p in trained), "after": after,
          "group_open": torch.distributed.is_initialized()}
torch.save(record, os.path.join(out, f"rank{os.environ.get('RANK', '0')}.pt"))
"""


def launch(
    folder: Path, model: Path, out: Path, trainer: str, processes: int, steps: int, resume: bool = False
) -> None:
    """Trains `trainer` `steps` steps into `out`: one plain process, or `processes` fully sharded ranks."""
    script = folder / "train.py"
    script.write_text(SCRIPT)
    mode = "fsdp" if processes > 1 else "plain"
    run_ranks(script, processes, [str(model), str(out), trainer, str(steps), "resume" if resume else "fresh", mode])


def exported(out: Path) -> dict[str, Any]:
    """The weights a run wrote as its final model."""
    from safetensors.torch import load_file

    return load_file(out / "model" / "model.safetensors")


def assert_same_weights(ours: Path, theirs: Path) -> None:
    """The same final weights, up to float summation order: AdamW moves a weight by lr * m / sqrt(v), so a weight
    whose gradients are tiny turns a 1e-7 difference in them into up to about 1e-5..1e-4 (seen once in a loaded
    hour, 3.3e-5); a wrong step or optimiser state moves weights by about lr = 1e-2."""
    mine, other = exported(ours), exported(theirs)
    assert mine.keys() == other.keys()
    for name, tensor in other.items():
        assert torch.allclose(mine[name], tensor, atol=1e-4), name


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model, and three GRPO steps of it by one process (`single`) and by two sharded ranks (`sharded`)."""
    folder = tmp_path_factory.mktemp("fsdp")
    model = build_tiny_model(folder / "model", TinyModelConfig(seed=5))
    launch(folder, model, folder / "single", "grpo", 1, steps=3)
    launch(folder, model, folder / "sharded", "grpo", 2, steps=3)
    return folder, model


@pytest.mark.slow
def test_two_sharded_ranks_take_the_same_grpo_steps_as_one_process(grpo_runs: tuple[Path, Path]) -> None:
    folder, _ = grpo_runs
    single, ranks = load_ranks(folder / "single", 1)[0], load_ranks(folder / "sharded", 2)
    for rank in ranks:  # each rank updated half the weights (the vocabulary's rows split evenly)
        assert rank["local_numel"] <= rank["numel"] // 2 + 64, "the weights were not sharded"
        assert not rank["group_open"], "the run left its process group open"
        assert rank["after"] == single["after"], "after train() the policy samples with the whole trained weights"
    assert single["local_numel"] == single["numel"]
    assert_same_weights(folder / "sharded", folder / "single")
    assert_same_steps(ranks[0]["history"], single["history"])
    assert_same_steps(ranks[1]["history"], ranks[0]["history"])
    assert (folder / "sharded" / "metrics.jsonl").read_text().count("\n") == 3, "rank 0 alone logs"


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 2), (1, 2), (2, 1)], ids=["sharded", "to-sharded", "from-sharded"])
def test_a_resumed_run_matches_the_uninterrupted_one_across_sharded_and_unsharded_checkpoints(
    grpo_runs: tuple[Path, Path], first: int, then: int
) -> None:
    """Two steps, then the third after a resume, by sharded or unsharded runs in either order: the checkpoint holds
    the whole weights and AdamW's state (by parameter name from a sharded run, by position from an unsharded one)."""
    folder, model = grpo_runs
    out = folder / f"resumed-{first}-{then}"
    launch(folder, model, out, "grpo", first, steps=2)
    launch(folder, model, out, "grpo", then, steps=3, resume=True)
    assert_same_weights(out, folder / "single")


@pytest.mark.slow
def test_two_sharded_ranks_take_the_same_rltf_steps_as_one_process(tmp_path: Path) -> None:
    """RLTF's critique targets are scored by the gathered model, each rank its own share."""
    trainer = "rltf"
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1))
    launch(tmp_path, model, tmp_path / "single", trainer, 1, steps=2)
    launch(tmp_path, model, tmp_path / "sharded", trainer, 2, steps=2)
    assert_same_weights(tmp_path / "sharded", tmp_path / "single")
    single, sharded = load_ranks(tmp_path / "single", 1)[0], load_ranks(tmp_path / "sharded", 2)[0]
    assert_same_steps(sharded["history"], single["history"])


OTHER_TRAINERS = {
    "skill_sd": ("test_skill_sd_data_parallel", 4),
    "exit": ("test_exit_data_parallel", 3),
    "agent_r": ("test_agent_r_data_parallel", 2),
}
"""The data-parallel tests whose scripts also run fully sharded here (module, steps)."""


@pytest.mark.slow
@pytest.mark.parametrize("trainer", sorted(OTHER_TRAINERS))
def test_the_other_trainers_take_the_same_steps_sharded_as_in_one_process(tmp_path: Path, trainer: str) -> None:
    """Skill-SD, ExIt and Agent-R through their data-parallel tests' scripts, sharded (their ranks sample different
    numbers of replies: a collective per token step, as transformers syncs a sharded model's generation, hangs)."""
    import importlib

    module, steps = OTHER_TRAINERS[trainer]
    script = importlib.import_module(module).SCRIPT
    sharded = script.replace("resume=resume)", "resume=resume, fsdp=int(os.environ.get('WORLD_SIZE', 1)) > 1)")
    sharded = sharded.replace('"weights": trainer.model.state_dict(), ', "").replace(
        '"weights": run.model.state_dict(), ', ""
    )
    assert sharded.count("fsdp=") == 1 and "state_dict" not in sharded, "the script changed: update this test"
    path = tmp_path / "train.py"
    path.write_text(sharded)
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=2 if trainer == "agent_r" else 3))
    for processes, out in ((1, "single"), (2, "sharded")):
        leading = [str(Path(__file__).resolve().parents[1])] if trainer == "agent_r" else []  # (its tests folder)
        run_ranks(path, processes, [*leading, str(model), str(tmp_path / out), str(steps), "fresh"])
    assert_same_weights(tmp_path / "sharded", tmp_path / "single")
    single, ranks = load_ranks(tmp_path / "single", 1)[0], load_ranks(tmp_path / "sharded", 2)
    assert_same_steps(ranks[0]["history"], single["history"])


def test_fsdp_with_lora_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fsdp"):
        TrainerConfig(fsdp=True, lora_rank=8)


def test_a_model_without_transformer_blocks_to_shard_by_is_refused() -> None:
    with pytest.raises(ValueError, match="_no_split_modules"):
        shard(torch.nn.Linear(2, 2), torch.device("cpu"))


def test_an_optimizer_state_keyed_by_name_loads_into_an_unsharded_run() -> None:
    """An AdamW state keyed by parameter name (as a sharded run saves it) restored into an unsharded run: every moment
    lands on its own parameter."""
    from reflectgym.trainers.sharding import keyed_by_name

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)  # (a frozen parameter shifts every later position)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=0.1)
    model(torch.randn(5, 3)).square().sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    fresh = torch.optim.AdamW(trained, lr=0.1)
    by_name = keyed_by_name(model, fresh, saved)
    assert sorted(by_name["state"]) == ["0.weight", "1.bias", "1.weight"]
    load_optimizer_state(model, fresh, by_name)
    for parameter in trained:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(fresh.state[parameter][key], optimizer.state[parameter][key])


def test_an_optimizer_before_its_first_step_is_saved_and_restored_without_a_step() -> None:
    """A checkpoint due before any applied step (a step without sequences, a skipped one): saving and loading the empty
    state takes no zero-gradient step (torch.distributed.checkpoint's would fill AdamW's state with step 1 and start
    its bias correction one step late); the settings alone are restored."""
    from reflectgym.trainers.sharding import full_optimizer_state

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    saved = full_optimizer_state(model, optimizer)
    assert not optimizer.state and saved["state"] == {}
    assert saved["param_groups"][0]["params"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    resumed = torch.optim.AdamW(model.parameters(), lr=0.5)
    load_optimizer_state(model, resumed, saved)
    assert not resumed.state and resumed.param_groups[0]["lr"] == 0.1


def test_a_model_an_earlier_fsdp_run_sharded_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its gathered parameters are not the shards an update steps: a second run on it would train nothing."""
    from reflectgym.trainers import session

    policy = session.load_policy(TrainerConfig(model=str(build_tiny_model(tmp_path / "model")), device="cpu"))
    monkeypatch.setattr(session, "is_sharded", lambda model: model is policy.model)
    with pytest.raises(ValueError, match="sharded by an earlier fsdp run"):
        session.TrainingSession(TrainerConfig(output_dir=str(tmp_path / "run"), device="cpu"), policy)

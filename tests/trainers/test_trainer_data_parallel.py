"""Data-parallel training under torchrun, for real: two CPU processes (gloo) take the same steps as one process
on the whole batch, including ranks with uneven numbers of minibatches (and, for RLTF, uneven shares of
critique targets, or no sequences at all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.torchrun import run_ranks, untimed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model  # noqa: E402
from reflectgym.trainers.config import ConfigError  # noqa: E402
from reflectgym.trainers.data_parallel import World, close_world, init_world  # noqa: E402
from reflectgym.trainers.session import TrainerConfig, load_policy  # noqa: E402

SCRIPT = """
import os, sys
import torch
import reflectgym
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.rltf import RLTFConfig, RLTFTrainer
from reflectgym.trainers.sft import SFTConfig, SFTTrainer

tasks = [{"id": f"t{i}", "prompt": f"Say {w}.", "answer": w} for i, w in enumerate(["yes", "no", "maybe"])]
env_id = reflectgym.register_task_env("DDPToy-v0", tasks, lambda task, answer: min(len(answer), 6) / 6)
model, out, trainer = sys.argv[1], sys.argv[2], sys.argv[3]
steps, resume = int(sys.argv[4]), sys.argv[5] == "resume"
if trainer == "sft":  # batches of 3 sequences: one rank holds 2 minibatches, the other 1
    config = SFTConfig(model=model, env_id=env_id, output_dir=out, steps=3, batch_size=3, minibatch_size=1,
                       num_demonstrations=9, first_seed=0, lr=1e-2, save_every=0, progress=False,
                       successful_only=False)
    run = SFTTrainer(config)
elif trainer == "rltf":  # greedy: one process and two ranks play the same episodes, whatever their batches hold
    revise_id = reflectgym.register_task_env("DDPRevise-v0", tasks, lambda task, answer: sum(answer.encode()) % 5 / 4,
                                             max_attempts=2)
    config = RLTFConfig(model=model, env_id=revise_id, env_kwargs={}, output_dir=out, steps=steps, tasks_per_step=2,
                        group_size=4, temperature=0.0, lr=1e-2, max_new_tokens=6, minibatch_size=2, save_every=0,
                        progress=False, fm_coef=0.5, sd_logprob_floor=float("-inf"), resume=resume)
    run = RLTFTrainer(config)
    shares, local = [], []
    inner = run._training_sequences
    def recording(groups):  # the share each rank uses, and what this rank itself holds (targets, sequences)
        sequences, counts = inner(groups)
        shares.append(run._target_share)
        local.append((sum(s.supervised for s in sequences), len(sequences)))
        return sequences, counts
    run._training_sequences = recording
else:
    config = GRPOConfig(model=model, env_id=env_id, output_dir=out, steps=steps, tasks_per_step=2, group_size=4,
                        lr=1e-2, max_new_tokens=6, minibatch_size=2, save_every=0, progress=False,
                        drop_zero_variance_groups=False, resume=resume)
    run = GRPOTrainer(config)
history = run.train()
rank = int(os.environ.get("RANK", "0"))
record = {"weights": run.model.state_dict(), "history": history, "group_open": torch.distributed.is_initialized()}
if trainer == "rltf":
    record.update(shares=shares, local=local)
torch.save(record, os.path.join(out, f"rank{rank}.pt"))
"""


def launch(
    tmp_path: Path, model: Path, out: Path, trainer: str, processes: int, steps: int = 2, resume: bool = False
) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_ranks(script, processes, [str(model), str(out), trainer, str(steps), "resume" if resume else "fresh"])


@pytest.mark.slow
def test_two_ranks_take_the_same_sft_steps_as_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=4))
    launch(tmp_path, model, tmp_path / "single", "sft", 1)
    launch(tmp_path, model, tmp_path / "ddp", "sft", 2)
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=False)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for name, tensor in single["weights"].items():
        assert torch.allclose(ranks[0]["weights"][name], tensor, atol=1e-5), name
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), f"ranks disagree on {name}"
    assert [h["loss"] for h in ranks[0]["history"]] == pytest.approx([h["loss"] for h in single["history"]], abs=1e-5)
    logged = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 3, "rank 0 alone logs"


@pytest.mark.slow
def test_two_ranks_share_grpo_rollouts_and_stay_in_sync(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=5))
    launch(tmp_path, model, tmp_path / "ddp", "grpo", 2)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), f"ranks disagree on {name}"
    assert all("loss" in h for h in ranks[0]["history"]), "every step updated"
    assert not ranks[0]["group_open"] and not ranks[1]["group_open"], "the run left its process group open"
    untimed = [[{k: v for k, v in h.items() if "seconds" not in k} for h in rank["history"]] for rank in ranks]
    assert untimed[0] == untimed[1], "metrics are global: every rank sees the same"


@pytest.mark.slow
def test_two_ranks_resume_exactly_with_every_ranks_generators(tmp_path: Path) -> None:
    """Each rank samples its own rollouts: a resumed run matches an uninterrupted one only if every rank gets its
    own generators back from the checkpoint (not rank 0's, not a fresh seed)."""
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=6))
    launch(tmp_path, model, tmp_path / "whole", "grpo", 2, steps=3)
    launch(tmp_path, model, tmp_path / "resumed", "grpo", 2, steps=2)  # stops after step 2 (its last checkpoint)
    launch(tmp_path, model, tmp_path / "resumed", "grpo", 2, steps=3, resume=True)
    whole, resumed = (torch.load(tmp_path / run / "rank1.pt", weights_only=False) for run in ("whole", "resumed"))
    for name, tensor in whole["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), f"the resumed run differs on {name}"
    last = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1]) for run in ("whole", "resumed")]
    untimed = [{k: v for k, v in record.items() if k != "time" and "seconds" not in k} for record in last]
    assert untimed[0] == untimed[1], "step 3's rollouts and loss are the same"


def spread_weights(folder: Path, seed: int) -> Path:
    """The tiny model with its matrices redrawn at std 1/sqrt(fan-in): its greedy replies then depend on the prompt
    (at the tiny init they are one byte repeated), so tasks and turns earn different rewards."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.normal_(0.0, parameter.shape[1] ** -0.5)
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "idle_rank"), [(1, False), (3, True)], ids=["uneven-targets", "idle-rank"])
def test_two_ranks_take_the_same_rltf_steps_as_one_process_on_the_whole_batch(
    tmp_path: Path, seed: int, idle_rank: bool
) -> None:
    """Greedy rollouts: each rank plays one of the step's two tasks, as one process plays both. In step 1 rank 0
    holds re-attached answers and critiques, rank 1 critiques alone (seed 1) or nothing at all (seed 3: it still
    takes part in every collective). The step's loss is the same function of all the sequences only if the share
    of critique targets is the step's over every rank (each rank's own would weigh its critiques differently)."""
    model = spread_weights(build_tiny_model(tmp_path / "model", TinyModelConfig(seed=seed)), seed)
    launch(tmp_path, model, tmp_path / "single", "rltf", 1)
    launch(tmp_path, model, tmp_path / "ddp", "rltf", 2)
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=False)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    (targets0, sequences0), (targets1, sequences1) = ranks[0]["local"][0], ranks[1]["local"][0]
    if idle_rank:
        assert sequences1 == 0 < sequences0, "rank 1 held sequences: an idle rank is untested"
    else:
        assert sequences1 > 0 and targets0 * sequences1 != targets1 * sequences0, "equal own shares: untested"
    assert single["history"][0]["sd_sequences"] > 0 and single["history"][0]["fm_sequences"] > 0
    for name, tensor in single["weights"].items():
        assert torch.allclose(ranks[0]["weights"][name], tensor, atol=1e-5), name
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), f"ranks disagree on {name}"
    assert ranks[0]["shares"] == ranks[1]["shares"] == pytest.approx(single["shares"], abs=1e-12)
    assert untimed(ranks[0]["history"]) == untimed(ranks[1]["history"]), "metrics are global: every rank logs the same"
    for ddp_step, single_step in zip(untimed(ranks[0]["history"]), untimed(single["history"]), strict=True):
        assert ddp_step.keys() == single_step.keys()
        for key, value in single_step.items():
            assert ddp_step[key] == pytest.approx(value, abs=1e-5), key


ALL_REDUCES = """
import os, sys
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModelForCausalLM
from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.losses import sft_loss
from reflectgym.trainers.update import optimizer_step

dist.init_process_group("gloo")
rank = dist.get_rank()
sequences = [TrainingSequence((1 + i, 2, 3 + rank, 4 + i), (0, 1, 1, 1), (0.0,) * 4) for i in range(2 + rank)]
record = {}
for minibatch_size in (1, 3):  # rank 0: 2 passes and an idle one, rank 1: 3 passes; then 1 pass each
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    ddp = DistributedDataParallel(model)
    calls = []
    def counting(state, bucket):
        calls.append(bucket.index())
        return allreduce_hook(state, bucket)
    ddp.register_comm_hook(None, counting)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = lambda batch, logprobs: (sft_loss(logprobs, batch.loss_mask), {})
    optimizer_step(ddp, optimizer, sequences, loss, pad_id=0, minibatch_size=minibatch_size)
    record[minibatch_size] = (len(calls), {name: value.detach() for name, value in model.named_parameters()})
dist.destroy_process_group()
torch.save(record, os.path.join(sys.argv[2], f"rank{rank}.pt"))
"""


@pytest.mark.slow
def test_a_step_all_reduces_its_gradients_once_however_many_minibatches_it_runs(tmp_path: Path) -> None:
    """Gradients accumulate on each rank and are all-reduced in the step's last pass alone: a step of three passes
    makes the all-reduces of a step of one, and takes the same step."""
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=2))
    script = tmp_path / "all_reduces.py"
    script.write_text(ALL_REDUCES)
    run_ranks(script, 2, [str(model), str(tmp_path)])
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    for record in ranks:
        (split_calls, split), (whole_calls, whole) = record[1], record[3]
        assert split_calls == whole_calls > 0, f"{split_calls} bucket all-reduces in three passes, {whole_calls} in one"
        for name, tensor in whole.items():
            assert torch.allclose(split[name], tensor, atol=1e-6), name
    for name, tensor in ranks[0][1][1].items():
        assert torch.equal(tensor, ranks[1][1][1][name]), f"ranks disagree on {name}"


def test_a_local_rank_beyond_the_visible_gpus_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`torchrun --nproc-per-node=2` on a one-GPU machine: rank 1 says why, instead of CUDA's "invalid device
    ordinal" from deep inside `.to()` (seen on the GPU box)."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="local rank 1 has no GPU of its own"):
        load_policy(TrainerConfig(model=str(tmp_path / "checkpoint"), output_dir=str(tmp_path / "run")))


@pytest.mark.parametrize(
    ("device", "expected", "backend"),
    [(None, "cuda:1", "nccl"), ("cuda", "cuda:1", "nccl"), ("cpu", "cpu", "gloo")],
)
def test_the_tiny_model_joins_the_group_on_this_ranks_training_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, device: str | None, expected: str, backend: str
) -> None:
    """Under torchrun on a CUDA machine, the ranks that wait for rank 0's tiny model join the process group on their
    own training device: `torch.cuda.set_device(torch.device("cuda"))` (no index) is a ValueError, a shared GPU 0
    would put every NCCL rank on one GPU, and NCCL for a `device: cpu` run cannot sum its CPU tensors."""
    import torch.distributed as dist
    from torch.cuda._utils import _get_device_index

    from reflectgym.agents.hf_policy import HFPolicy
    from reflectgym.trainers import session

    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda where: current.append(_get_device_index(where)))
    backends: list[str] = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend: backends.append(backend))
    monkeypatch.setattr(session, "barrier", lambda: None)
    loaded: list[str | None] = []

    def from_pretrained(source: object, config: object, name: object = None) -> HFPolicy:
        loaded.append(getattr(config, "device", None))
        raise RuntimeError("loaded")

    monkeypatch.setattr(HFPolicy, "from_pretrained", from_pretrained)
    with pytest.raises(RuntimeError, match="loaded"):
        load_policy(TrainerConfig(model="tiny", output_dir=str(tmp_path / "run"), device=device))
    assert backends == [backend]
    assert current == ([1] if backend == "nccl" else [])
    assert loaded == [expected]


@pytest.fixture
def fake_group(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """torch.distributed's group calls, recorded instead of made (the group starts closed)."""
    import torch.distributed as dist

    from reflectgym.trainers import data_parallel

    group: dict[str, Any] = {"open": False, "backends": [], "gpus": []}
    monkeypatch.setattr(data_parallel, "_joined_here", False)
    monkeypatch.setattr(dist, "is_initialized", lambda: group["open"])
    monkeypatch.setattr(dist, "init_process_group", lambda backend: group.update(open=True, backends=[backend]))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: group.update(open=False))
    monkeypatch.setattr(torch.cuda, "set_device", group["gpus"].append)
    return group


def test_cuda_without_an_index_under_torchrun_is_this_ranks_gpu_or_says_to_pass_it(
    monkeypatch: pytest.MonkeyPatch, fake_group: dict[str, Any]
) -> None:
    """A script's policy on "cuda" is on the current GPU: GPU 0 on every rank unless the script made its own
    current. Rank 1 is told to pass cuda:1 (`torch.cuda.set_device` said only "Expected a cuda device with a
    specified index"), or joins on GPU 1 when it is current."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(ValueError, match=r'load the policy on device "cuda:1" \(cuda:LOCAL_RANK\)'):
        init_world(World(rank=1, size=2, local_rank=1), torch.device("cuda"))
    assert not fake_group["open"]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    init_world(World(rank=1, size=2, local_rank=1), torch.device("cuda"))
    assert fake_group["gpus"] == [1] and fake_group["backends"] == ["nccl"]


def test_a_run_leaves_the_process_group_it_joined_and_no_other(fake_group: dict[str, Any]) -> None:
    world = World(rank=0, size=2, local_rank=0)
    init_world(world, torch.device("cpu"))
    assert fake_group["open"] and fake_group["backends"] == ["gloo"]
    close_world()
    assert not fake_group["open"]
    fake_group["open"] = True  # a group the script joined itself
    init_world(world, torch.device("cpu"))
    close_world()
    assert fake_group["open"], "the script's own group was closed"

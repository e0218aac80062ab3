"""One optimiser step: minibatch accumulation equals the one-big-batch mean (over tokens or over sequences);
parameters change; a step with a gradient that is not finite leaves them as they were."""

from __future__ import annotations

import copy

import pytest
from support.fake_gpu import fake_gpu

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.trainers.batching import Batch, TrainingSequence  # noqa: E402
from reflectgym.trainers.losses import sft_loss  # noqa: E402
from reflectgym.trainers.session import training_autocast  # noqa: E402
from reflectgym.trainers.update import optimizer_step  # noqa: E402


def sft(batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    return sft_loss(logprobs, batch.loss_mask), {"tokens_seen": float(batch.loss_mask.sum())}


def sft_per_sequence(batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    return sft_loss(logprobs, batch.loss_mask, "sequence"), {}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return transformers.LlamaForCausalLM(config)


SEQUENCES = [
    TrainingSequence((1, 2, 3, 4), (0, 0, 1, 1), (0.0,) * 4),
    TrainingSequence((5, 6), (0, 1), (0.0,) * 2),
    TrainingSequence((7, 8, 9, 10, 11), (0, 1, 1, 1, 0), (0.0,) * 5),
]


@pytest.mark.parametrize("minibatch_size", [1, 2])
def test_accumulated_step_equals_one_big_batch(minibatch_size: int) -> None:
    whole, split = make_model(), make_model()
    sgd_whole = torch.optim.SGD(whole.parameters(), lr=0.1)
    sgd_split = torch.optim.SGD(split.parameters(), lr=0.1)
    result_whole = optimizer_step(whole, sgd_whole, SEQUENCES, sft, pad_id=0, minibatch_size=3)
    result_split = optimizer_step(split, sgd_split, SEQUENCES, sft, pad_id=0, minibatch_size=minibatch_size)
    assert result_split.loss == pytest.approx(result_whole.loss, rel=1e-5)
    assert result_whole.tokens == 6
    for p_whole, p_split in zip(whole.parameters(), split.parameters(), strict=True):
        assert torch.allclose(p_whole, p_split, atol=1e-6)


@pytest.mark.parametrize("minibatch_size", [1, 2])
def test_sequence_normalised_step_is_the_mean_over_sequences_however_it_is_split(minibatch_size: int) -> None:
    whole, split = make_model(), make_model()
    sgd_whole = torch.optim.SGD(whole.parameters(), lr=0.1)
    sgd_split = torch.optim.SGD(split.parameters(), lr=0.1)
    step = {"pad_id": 0, "normalisation": "sequence"}
    result_whole = optimizer_step(whole, sgd_whole, SEQUENCES, sft_per_sequence, minibatch_size=3, **step)
    result_split = optimizer_step(split, sgd_split, SEQUENCES, sft_per_sequence, minibatch_size=minibatch_size, **step)
    assert result_split.loss == pytest.approx(result_whole.loss, rel=1e-5)
    for p_whole, p_split in zip(whole.parameters(), split.parameters(), strict=True):
        assert torch.allclose(p_whole, p_split, atol=1e-6)
    with torch.no_grad():  # the mean of the three sequences' own means
        means = []
        for sequence in SEQUENCES:
            ids = torch.tensor([sequence.input_ids])
            logprobs = torch.log_softmax(make_model()(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
            mask = torch.tensor(sequence.loss_mask[1:], dtype=torch.float32)
            means.append(float(-(logprobs * mask).sum() / mask.sum()))
    assert result_whole.loss == pytest.approx(sum(means) / 3, rel=1e-5)


def test_a_step_whose_gradient_is_not_finite_is_skipped() -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())

    def poisoned(batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return sft_loss(logprobs, batch.loss_mask) * float("nan"), {}

    with pytest.warns(UserWarning, match="optimiser step skipped"):
        result = optimizer_step(
            model, torch.optim.AdamW(model.parameters(), lr=1e-2), SEQUENCES, poisoned, pad_id=0, minibatch_size=2
        )
    assert not result.applied
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_parameters_change_and_loss_falls() -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [optimizer_step(model, optimizer, SEQUENCES, sft, pad_id=0, minibatch_size=2).loss for _ in range(20)]
    assert losses[-1] < losses[0] * 0.5
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize("dropout", [True, False])
def test_the_passes_run_with_dropout_only_when_asked(dropout: bool) -> None:
    """GRPO's update runs without dropout, as its sampler and reference do: its ratio is then 1 before the step."""
    model, modes = make_model(), []

    def recording(batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        modes.append(model.training)
        return sft(batch, logprobs)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    optimizer_step(model, optimizer, SEQUENCES, recording, pad_id=0, minibatch_size=2, dropout=dropout)
    assert modes == [dropout, dropout]


def test_a_step_with_no_loss_tokens_is_refused() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="no token carries loss"):
        optimizer_step(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            [TrainingSequence((1, 2), (0, 0), (0.0, 0.0))],
            sft,
            pad_id=0,
            minibatch_size=1,
        )


@pytest.mark.parametrize(
    ("device", "native_bf16", "bf16", "expected"),
    [
        ("cuda:0", True, None, "bfloat16"),
        ("cuda:0", False, None, None),  # a V100 or T4 emulates bfloat16: float32, not its emulation
        ("cuda:0", False, True, "bfloat16"),  # unless the config asks for it
        ("cpu", True, None, None),
        ("cpu", True, True, "bfloat16"),
    ],
)
def test_the_passes_default_to_bfloat16_autocast_only_on_a_gpu_that_computes_in_it(
    monkeypatch: pytest.MonkeyPatch, device: str, native_bf16: bool, bf16: bool | None, expected: str | None
) -> None:
    fake_gpu(monkeypatch, native_bf16)
    wanted = getattr(torch, expected) if expected else None
    assert training_autocast(bf16, torch.device(device)) == wanted

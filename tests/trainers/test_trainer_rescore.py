"""Batching and rescoring: same response ids under another context, aligned exactly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.trainers.batching import TrainingSequence, collate, target_logprobs  # noqa: E402
from reflectgym.trainers.rescore import AlignmentError, check_same_response, rescore  # noqa: E402


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return transformers.LlamaForCausalLM(config).eval()


def test_collate_shifts_masks_to_targets() -> None:
    batch = collate(
        [
            TrainingSequence((1, 2, 3), (0, 1, 1), (0.0, -1.0, -2.0), advantage=0.5),
            TrainingSequence((4, 5), (0, 1), (0.0, -3.0)),
        ],
        pad_id=0,
    )
    assert batch.input_ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.loss_mask.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert batch.old_logprobs.tolist() == [[-1.0, -2.0], [-3.0, 0.0]]
    assert batch.advantages.tolist() == [[0.5, 0.5], [1.0, 0.0]]  # (0 on padding)
    turns = TrainingSequence((1, 2, 3, 4), (0, 1, 0, 1), (0.0,) * 4, 9.0, token_advantages=(0.0, 2.0, 0.0, 3.0))
    per_token = collate([turns], pad_id=0)
    assert per_token.advantages.tolist() == [[2.0, 0.0, 3.0]]  # (per-turn advantages override the sequence's)
    with pytest.raises(ValueError, match="token_advantages"):
        TrainingSequence((1, 2), (0, 1), (0.0, 0.0), token_advantages=(1.0,))


def test_misaligned_or_first_token_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="must align"):
        TrainingSequence((1, 2), (0, 1, 1), (0.0, 0.0))
    with pytest.raises(ValueError, match="first token"):
        TrainingSequence((1, 2), (1, 1), (0.0, 0.0))


def test_rescore_equals_scoring_the_concatenation_and_padding_does_not_matter(model: torch.nn.Module) -> None:
    contexts, responses = [[1, 2, 3], [7, 8, 9, 10, 11, 12]], [[4, 5], [13]]
    scored = rescore(model, contexts, responses, pad_id=0)
    for context, response, logprobs in zip(contexts, responses, scored, strict=True):
        ids = torch.tensor([context + response])
        alone = target_logprobs(model, ids, torch.ones_like(ids))[0, len(context) - 1 :]
        assert torch.allclose(logprobs, alone, atol=1e-5)
    # the same response under two contexts: different scores, same ids
    teacher, student = rescore(model, [[1, 2, 3], [20, 21]], [[4, 5], [4, 5]], pad_id=0)
    assert not torch.allclose(teacher, student)


def test_alignment_check_names_the_first_difference() -> None:
    check_same_response([1, 2, 3], [1, 2, 3])
    with pytest.raises(AlignmentError, match="first difference at response token 1"):
        check_same_response([1, 2, 3], [1, 9, 3])
    with pytest.raises(AlignmentError, match="lengths differ"):
        check_same_response([1, 2], [1, 2, 3])


def test_rescore_with_grad_reaches_the_parameters(model: torch.nn.Module) -> None:
    (logprobs,) = rescore(model, [[1, 2]], [[3, 4]], pad_id=0, grad=True)
    logprobs.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad()

"""Loss functions against hand-computed values, and the Skill-SD gradient properties of TRAINERS.md §2."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")

from reflectgym.trainers.logprobs import token_logprobs  # noqa: E402
from reflectgym.trainers.losses import (  # noqa: E402
    discounted_turn_returns,
    group_advantages,
    grpo_loss,
    k3_kl,
    masked_mean,
    pooled_turn_advantages,
    self_distillation_loss,
    sft_loss,
    zero_variance_groups,
)


def test_group_advantages_by_hand() -> None:
    advantages = group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0, 3.0, 1.0, 2.0, 2.0]), group_size=4)
    # group 1: mean .5, population std .5 → (1-.5)/.5 = 1 ; (0-.5)/.5 = -1
    assert advantages[:4].tolist() == pytest.approx([1 / 3**0.5, -(3**0.5), 1 / 3**0.5, 1 / 3**0.5], rel=1e-5)
    # group 2: [3,1,2,2] mean 2, std sqrt(.5)
    assert advantages[4:].tolist() == pytest.approx([2**0.5, -(2**0.5), 0.0, 0.0], rel=1e-5)
    assert group_advantages(torch.tensor([1.0, 1.0]), 2).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(3), 2)


def test_zero_variance_groups() -> None:
    assert zero_variance_groups(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]), 2).tolist() == [True, False, True]


def test_grpo_loss_by_hand_token_and_sequence_mean() -> None:
    old = torch.zeros(2, 2)
    logprobs = torch.tensor([[math.log(1.5), math.log(1.5)], [math.log(0.5), 0.0]], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # seq 0: ratio 1.5, A=1 → min(1.5, 1.2) = 1.2 → -1.2 per token ; seq 1: ratio .5, A=-1 → min(-.5, -.8) → +.8
    out = grpo_loss(logprobs, old, advantages, mask)
    assert out.loss.item() == pytest.approx((-1.2 - 1.2 + 0.8) / 3)
    assert out.clip_fraction.item() == pytest.approx(1.0)
    sequence = grpo_loss(logprobs, old, advantages, mask, normalisation="sequence")
    assert sequence.loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    out.loss.backward()
    assert logprobs.grad is not None and torch.all(logprobs.grad == 0), "clipped tokens carry no gradient"


def test_discounted_turn_returns_and_their_pooled_advantages_by_hand() -> None:
    assert discounted_turn_returns([0.0, 0.0, 1.0], 0.5) == [0.25, 0.5, 1.0]
    assert discounted_turn_returns([1.0, -1.0], 1.0) == [0.0, -1.0] and discounted_turn_returns([], 0.9) == []
    # pooled over the group's turns {0.1, 1, 1}: mean 0.7, population std sqrt(0.18)
    advantages = pooled_turn_advantages([[0.1, 1.0], [1.0]])
    std = math.sqrt(((0.1 - 0.7) ** 2 + 2 * 0.3**2) / 3)
    assert advantages[0] == pytest.approx([-0.6 / std, 0.3 / std], rel=1e-5)
    assert advantages[1] == pytest.approx([0.3 / std], rel=1e-5)
    one_turn = [[1.0], [0.0], [2.0], [1.0]]  # (one turn per episode: GRPO's group advantages)
    expected = group_advantages(torch.tensor([1.0, 0.0, 2.0, 1.0]), 4).tolist()
    assert [row[0] for row in pooled_turn_advantages(one_turn)] == pytest.approx(expected, rel=1e-5)


def test_grpo_loss_takes_an_advantage_per_token() -> None:
    """(B, T) advantages (per-turn returns) weigh each token by its own; a constant row is the (B,) form."""
    logprobs, old, mask = torch.zeros(1, 3, requires_grad=True), torch.zeros(1, 3), torch.ones(1, 3)
    per_token = grpo_loss(logprobs, old, torch.tensor([[2.0, -1.0, 0.5]]), mask)
    assert per_token.loss.item() == pytest.approx(-(2.0 - 1.0 + 0.5) / 3)
    per_token.loss.backward()
    assert logprobs.grad is not None and logprobs.grad[0].tolist() == pytest.approx([-2 / 3, 1 / 3, -0.5 / 3])
    constant = grpo_loss(logprobs, old, torch.tensor([[0.7, 0.7, 0.7]]), mask).loss
    assert constant.item() == pytest.approx(grpo_loss(logprobs, old, torch.tensor([0.7]), mask).loss.item())


def test_grpo_loss_unclipped_gradient_is_minus_advantage_times_ratio() -> None:
    logprobs = torch.zeros(1, 2, requires_grad=True)
    out = grpo_loss(logprobs, torch.zeros(1, 2), torch.tensor([2.0]), torch.ones(1, 2))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(-2.0)
    assert logprobs.grad[0].tolist() == pytest.approx([-1.0, -1.0])  # d(-ρA)/dlogπ = -ρA / N = -2/2


def test_k3_kl_by_hand_and_in_the_loss() -> None:
    value = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert value.item() == pytest.approx(0.5 + math.log(2) - 1)
    logprobs = torch.full((1, 1), math.log(0.5))
    out = grpo_loss(
        logprobs,
        logprobs,
        torch.tensor([0.0]),
        torch.ones(1, 1),
        ref_logprobs=torch.full((1, 1), math.log(0.25)),
        kl_coef=0.1,
    )
    assert out.loss.item() == pytest.approx(0.1 * (0.5 + math.log(2) - 1))
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(logprobs, logprobs, torch.tensor([0.0]), torch.ones(1, 1), kl_coef=0.1)


def test_sft_loss_ignores_masked_tokens() -> None:
    logprobs = torch.tensor([[-1.0, -3.0, -100.0]])
    assert sft_loss(logprobs, torch.tensor([[1.0, 1.0, 0.0]])).item() == pytest.approx(2.0)


def test_masked_mean_skips_empty_sequences_in_sequence_mode() -> None:
    values = torch.tensor([[1.0, 3.0], [5.0, 5.0]])
    assert masked_mean(values, torch.tensor([[1.0, 1.0], [0.0, 0.0]]), "sequence").item() == pytest.approx(2.0)


def test_token_logprobs_match_log_softmax() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))


def _log_softmax_way(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_and_their_gradients_are_log_softmaxs_slice_by_slice(
    dtype: torch.dtype, temperature: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values and gradients as `log_softmax(logits.float() / temperature)`'s, with slices smaller than a row (so
    several slices per sequence and a last short one are played); and torch's own gradient check in float64."""
    import reflectgym.trainers.logprobs as logprobs

    monkeypatch.setattr(logprobs, "SLICE_ELEMENTS", 3 * 50)  # 3 positions of a 50-token vocabulary per slice
    generator = torch.Generator().manual_seed(0)
    base = (torch.randn(2, 7, 50, generator=generator) * 4).to(dtype)
    targets = torch.randint(0, 50, (2, 7), generator=generator)
    weights = torch.randn(2, 7, generator=generator)
    ours, theirs = base.clone().requires_grad_(), base.clone().requires_grad_()
    (token_logprobs(ours, targets, temperature) * weights).sum().backward()
    (_log_softmax_way(theirs, targets, temperature) * weights).sum().backward()
    expected = _log_softmax_way(base, targets, temperature)
    assert torch.allclose(token_logprobs(base, targets, temperature), expected, atol=1e-5)
    assert ours.grad is not None and theirs.grad is not None and ours.grad.dtype == dtype
    assert torch.allclose(ours.grad.float(), theirs.grad.float(), atol=1e-6 if dtype == torch.float32 else 1e-2)
    assert base.equal(ours.detach())  # (the logits themselves are never scaled in place)
    doubles = torch.randn(2, 4, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, targets[:, :4] % 6, temperature), (doubles,))


def test_token_logprobs_refuse_a_temperature_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), 0.0)


def test_token_logprobs_keep_the_logits_for_the_backward_not_a_float32_copy() -> None:
    """What the backward pass keeps: the bfloat16 logits themselves and a float per position, not the float32
    (B, T, V) log-softmax (twice the logits' bytes) the plain way keeps."""
    logits = torch.randn(2, 16, 1000).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, 1000, (2, 16))
    kept: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        kept.append(tensor)
        return tensor

    def saved_bytes(way: object) -> int:
        kept.clear()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            way(logits, targets)  # type: ignore[operator]
        new = {id(tensor): tensor for tensor in kept if tensor.data_ptr() != logits.data_ptr()}
        return sum(tensor.numel() * tensor.element_size() for tensor in new.values())

    assert saved_bytes(token_logprobs) <= 2 * 16 * (4 + 8)  # (the log-normaliser and the targets)
    assert saved_bytes(_log_softmax_way) >= 2 * 16 * 1000 * 4  # (what it replaces)


# ----------------------------------------------------------------------------- Skill-SD properties
def _distributions(seed: int, vocab: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student_logits = torch.randn(vocab, generator=generator, requires_grad=True)
    teacher = torch.log_softmax(torch.randn(vocab, generator=generator), -1)
    old = torch.log_softmax(torch.randn(vocab, generator=generator), -1)
    return student_logits, teacher, old


def test_sd_gradient_at_a_sampled_token_is_rho_times_ell_times_grad_log_pi() -> None:
    student_logits, teacher, old = _distributions(0)
    token = 2
    logprob = torch.log_softmax(student_logits, -1)[token]
    loss = self_distillation_loss(
        logprob.view(1, 1), old[token].view(1, 1), teacher[token].view(1, 1), torch.ones(1, 1)
    )
    (grad,) = torch.autograd.grad(loss, student_logits)
    (grad_log_pi,) = torch.autograd.grad(torch.log_softmax(student_logits, -1)[token], student_logits)
    rho = torch.exp(logprob - old[token]).detach()
    ell = (logprob - teacher[token]).detach()
    assert torch.allclose(grad, rho * ell * grad_log_pi, atol=1e-6)


def _expected_sd_loss(
    student_logits: torch.Tensor, teacher: torch.Tensor, old: torch.Tensor, detach_rho: bool
) -> torch.Tensor:
    """E_{y~π_old}[ρ·k3] by enumerating the vocabulary."""
    logprobs = torch.log_softmax(student_logits, -1)
    total = torch.zeros(())
    for token in range(len(teacher)):
        lp = logprobs[token].view(1, 1)
        if detach_rho:
            ell = lp - teacher[token]
            per_token = torch.exp(lp - old[token]).detach() * (torch.exp(-ell) - 1 + ell)
        else:
            per_token = self_distillation_loss(lp, old[token].view(1, 1), teacher[token].view(1, 1), torch.ones(1, 1))
        total = total + torch.exp(old[token]) * per_token.sum()
    return total


def test_sd_expectation_is_exactly_reverse_kl_and_so_is_its_gradient() -> None:
    student_logits, teacher, old = _distributions(1)
    expected = _expected_sd_loss(student_logits, teacher, old, detach_rho=False)
    student = torch.log_softmax(student_logits, -1)
    reverse_kl = (student.exp() * (student - teacher)).sum()
    assert expected.item() == pytest.approx(reverse_kl.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(expected, student_logits)
    (true_grad,) = torch.autograd.grad(reverse_kl, student_logits)
    assert torch.allclose(grad, true_grad, atol=1e-6)


def test_detaching_rho_gives_the_forward_kl_gradient_instead() -> None:
    student_logits, teacher, old = _distributions(2)
    expected = _expected_sd_loss(student_logits, teacher, old, detach_rho=True)
    (grad,) = torch.autograd.grad(expected, student_logits)
    student = torch.log_softmax(student_logits, -1)
    forward_kl = (teacher.exp() * (teacher - student)).sum()
    (forward_grad,) = torch.autograd.grad(forward_kl, student_logits)
    assert torch.allclose(grad, forward_grad, atol=1e-6)
    fresh = torch.log_softmax(student_logits, -1)
    reverse_kl = (fresh.exp() * (fresh - teacher)).sum()
    (reverse_grad,) = torch.autograd.grad(reverse_kl, student_logits)
    assert not torch.allclose(grad, reverse_grad, atol=1e-3), "detaching ρ must change the gradient"


def test_teacher_equal_to_student_gives_zero_loss_and_gradient() -> None:
    logprobs = torch.log_softmax(torch.randn(2, 3), -1).requires_grad_(True)
    loss = self_distillation_loss(logprobs, logprobs.detach() - 0.3, logprobs.detach(), torch.ones(2, 3))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logprobs.grad == 0)

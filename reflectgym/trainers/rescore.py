"""`rescore`: log-probs of *the same response token ids* under another context (a teacher prompt with a skill,
the original prompt of a revised answer). Every self-distillation method needs it, and every one of them goes
wrong silently if the response is re-tokenised differently in the new context — so ids are spliced, never
re-tokenised, and `check_same_response` asserts it wherever text was rendered."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reflectgym.trainers.batching import TrainingSequence, collate, target_logprobs


class AlignmentError(AssertionError):
    """The response tokens differ between the two contexts; rescoring would compare different sequences."""


def check_same_response(original: Sequence[int], rescored: Sequence[int]) -> None:
    """Raises `AlignmentError` unless both tokenisations carry identical response ids."""
    if list(original) != list(rescored):
        first = next((i for i, (a, b) in enumerate(zip(original, rescored, strict=False)) if a != b), None)
        where = f"first difference at response token {first}" if first is not None else "lengths differ"
        raise AlignmentError(
            f"response ids differ between contexts ({len(original)} vs {len(rescored)} tokens; {where})"
        )


def rescore(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    grad: bool = False,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> list[Tensor]:
    """Log-probs of each response's ids given its new context, one (len(response),) tensor per pair.

    Args:
        model: A causal LM (Hugging Face interface: `model(input_ids=, attention_mask=).logits`).
        contexts: Token ids of each new context (e.g. the teacher's prompt and history).
        responses: The response ids exactly as the student sampled them.
        pad_id: Padding id for batching.
        grad: Keep the autograd graph (for a student re-scored under its own context).
        autocast_dtype: Run the pass under this autocast, as the passes it is compared with run.
        temperature: Score under the model's softmax at this temperature, as the passes it is compared with.
    """
    if len(contexts) != len(responses):
        raise ValueError(f"{len(contexts)} contexts for {len(responses)} responses")
    sequences = []
    for context, response in zip(contexts, responses, strict=True):
        if not context:
            raise ValueError("a context needs at least one token to predict the response from")
        ids = (*context, *response)
        sequences.append(TrainingSequence(ids, (0,) * len(context) + (1,) * len(response), (0.0,) * len(ids)))
    batch = collate(sequences, pad_id)
    device = next(model.parameters()).device
    with torch.set_grad_enabled(grad):
        logprobs = target_logprobs(
            model, batch.input_ids.to(device), batch.attention_mask.to(device), autocast_dtype, temperature
        )  # (B, T-1)
    out = []
    for row, (context, response) in enumerate(zip(contexts, responses, strict=True)):
        start = len(context) - 1  # target index of the first response token
        scored = logprobs[row, start : start + len(response)]
        spliced = batch.input_ids[row, len(context) : len(context) + len(response)].tolist()
        check_same_response(response, spliced)
        out.append(scored)
    return out


def rescore_frozen(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> list[Tensor]:
    """`rescore` without gradient and without dropout (eval mode, put back after), `batch_size` pairs per pass: the
    model as it is now scores for a loss of the update that follows (a teacher, an old policy)."""
    if len(contexts) != len(responses):
        raise ValueError(f"{len(contexts)} contexts for {len(responses)} responses")
    out: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for begin in range(0, len(contexts), batch_size):
            chunk = slice(begin, begin + batch_size)
            out += rescore(
                model,
                contexts[chunk],
                responses[chunk],
                pad_id=pad_id,
                autocast_dtype=autocast_dtype,
                temperature=temperature,
            )
    finally:
        model.train(was_training)
    return out

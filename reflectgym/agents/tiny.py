"""A tiny causal LM with a byte-level tokenizer, built offline, for CPU tests, examples and smoke runs.

`build_tiny_model(folder)` writes an ordinary checkpoint folder (config, weights, tokenizer with a ChatML chat
template) that loads back through `HFPolicy.from_pretrained`, the same path a user's checkpoint takes. Its
replies are noise (random weights), which is what plumbing tests want: real tokens, real log-probs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML, as SmolLM2 and Qwen use it."""

SPECIAL_TOKENS = ("<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of the tiny model."""

    hidden_size: int = 64
    """Width of the residual stream."""
    layers: int = 2
    """Transformer blocks."""
    heads: int = 4
    """Attention heads (2 key/value heads)."""
    max_positions: int = 32768
    """Context length (RoPE: costs no parameters)."""
    seed: int = 0
    """Seed of the random initialisation."""


def build_tokenizer(chat_template: str = CHATML_TEMPLATE):  # -> PreTrainedTokenizerFast
    """A byte-level tokenizer (256 byte tokens + ChatML specials) made offline with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={char: index for index, char in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token="<|endoftext|>",
        chat_template=chat_template,
    )


def build_tiny_model(
    folder: str | os.PathLike[str], config: TinyModelConfig | None = None, chat_template: str = CHATML_TEMPLATE
) -> Path:
    """Writes a tiny Llama-architecture checkpoint with a byte-level tokenizer to `folder`; returns it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = config or TinyModelConfig()
    tokenizer = build_tokenizer(chat_template)
    vocab = tokenizer.get_vocab()
    bos, eos, pad = vocab["<|endoftext|>"], vocab["<|im_end|>"], vocab["<|pad|>"]
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.hidden_size * 2,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=max(1, config.heads // 2),
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

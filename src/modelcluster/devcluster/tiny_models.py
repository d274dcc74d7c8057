"""A tiny causal language model for ``chat`` and ``text-generation``, made offline and deterministically.

A byte-level BPE tokenizer (with a chat template) is trained on a few built-in sentences and a
two-layer Llama with seeded random weights is built over it; both are saved with
``save_pretrained`` and placed into a Hugging Face hub cache as ``modelcluster/tiny-chat``, the
same way ``offline_models`` places all-MiniLM-L6-v2. Its answers are arbitrary text, produced in
milliseconds on a CPU: enough for the runtime's real generation path, streaming included.

torch, tokenizers and transformers come with the ``runtime`` extra; they are imported only when
the model has to be written.
"""

from __future__ import annotations

import json
import time
from importlib import import_module
from pathlib import Path
from typing import Any

from modelcluster.devcluster.binaries import log
from modelcluster.devcluster.offline_models import place_snapshot, revision_of

MODEL_ID = "modelcluster/tiny-chat"
SEED = 0
SENTENCES = (
    "the cat sat on the mat",
    "a dog ran in the park with a ball",
    "John Doe is a software engineer at Google in Paris",
    "Once upon a time there was a little house",
    "what is the weather like today in the city",
    "models serve requests quickly and reliably",
)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
VOCAB_SIZE = 300
MODEL_MAX_LENGTH = 4096
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": MODEL_MAX_LENGTH,
    "tie_word_embeddings": False,
}
# Saved in generation_config.json: greedy, never an empty answer. A request that names no limit gets
# the runtime handler's own max_new_tokens (256), which wins over the 16 here in generate().
GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 16, "min_new_tokens": 1, "do_sample": False}


def recipe() -> str:
    """Everything the model's files follow from; its hash names the snapshot, so a change makes a new one."""
    return json.dumps(
        {
            "model": MODEL_ID,
            "seed": SEED,
            "sentences": SENTENCES,
            "special_tokens": SPECIAL_TOKENS,
            "vocab_size": VOCAB_SIZE,
            "chat_template": CHAT_TEMPLATE,
            "architecture": ARCHITECTURE,
            "generation": GENERATION_DEFAULTS,
            "printable_only": True,
        },
        sort_keys=True,
    )


def bpe_tokenizer(
    sentences: tuple[str, ...] = SENTENCES, vocab_size: int = VOCAB_SIZE, chat_template: str | None = None
) -> Any:
    """A byte-level BPE tokenizer trained on ``sentences``, with ``<pad>``, ``<s>`` and ``</s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers: Any = import_module("transformers")

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(list(sentences), trainer)
    pad, bos, eos = SPECIAL_TOKENS
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=bos, eos_token=eos, pad_token=pad, model_max_length=MODEL_MAX_LENGTH
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def unprintable_token_ids(pieces: dict[int, str], allowed: set[int]) -> list[int]:
    """Ids whose text is empty or not printable ASCII, except ``allowed``.

    These are special tokens, control bytes and lone bytes of UTF-8 characters; suppressing them
    keeps the answers of random weights readable.
    """
    return sorted(
        index
        for index, text in pieces.items()
        if index not in allowed and not (text and text.isascii() and text.isprintable())
    )


def causal_lm(tokenizer: Any) -> Any:
    """A Llama over ``tokenizer`` with random weights drawn from ``SEED``, leaving the global RNG as it was."""
    import torch

    transformers: Any = import_module("transformers")
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **ARCHITECTURE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = transformers.LlamaForCausalLM(config)
    pieces = {index: tokenizer.decode([index], skip_special_tokens=True) for index in range(len(tokenizer))}
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=unprintable_token_ids(pieces, {tokenizer.eos_token_id}),
        **GENERATION_DEFAULTS,
    )
    model.eval()
    return model


def parameter_count(model: Any) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def write_tiny_chat(directory: Path) -> int:
    """Save the tokenizer, the model and its generation config into ``directory``; the parameter count."""
    transformers_logging: Any = import_module("transformers.utils.logging")
    tokenizer = bpe_tokenizer(chat_template=CHAT_TEMPLATE)
    model = causal_lm(tokenizer)
    tokenizer.save_pretrained(directory)
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # one small shard: a bar would only clutter the log
    try:
        model.save_pretrained(directory)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    return parameter_count(model)


def seed_tiny_chat(hf_home: Path) -> str | None:
    """Place ``modelcluster/tiny-chat`` under ``hf_home``; the model id, or None without the runtime extra.

    An existing snapshot of the same recipe is kept as it is, without importing torch.
    """

    def write(directory: Path) -> None:
        started = time.monotonic()
        log(f"generating {MODEL_ID} (tiny random-weight Llama, seed {SEED}) ...")
        params = write_tiny_chat(directory)
        log(f"generating {MODEL_ID} done in {time.monotonic() - started:.1f}s ({params} parameters)")

    try:
        place_snapshot(hf_home, MODEL_ID, revision_of(recipe()), write)
    except ImportError as exc:
        log(f"{MODEL_ID} not generated: {exc} (torch, tokenizers and transformers come with the `runtime` extra)")
        return None
    return MODEL_ID

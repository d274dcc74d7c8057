"""Tiny models for every task family, written offline with ``save_pretrained``: random weights from seeded configs,
tokenizers and processors built locally. Each builder writes one model directory in well under a second and a
megabyte; the runtime then loads it through its real loading path. The runtime tests build them into temporary
directories, and the local cluster places one per task into its hub cache (:mod:`modelcluster.devcluster.tiny_tasks`).

Generative models carry a generation config that suppresses special and unprintable tokens, so that their
(arbitrary) answers are never empty.

torch, transformers and diffusers come with the ``runtime`` extra and are imported only inside the builders.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

from modelcluster.devcluster import tiny_models
from modelcluster.devcluster.tiny_models import SENTENCES

SEED = 0

#: One chat template for the multimodal models: media blocks become the model's media tokens.
MEDIA_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}IMAGE"
    "{% elif c['type'] == 'video' %}VIDEO"
    "{% elif c['type'] == 'audio' %}AUDIO{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def imported(module: str, *names: str) -> Any:
    """The attributes ``names`` of ``module``, imported now (transformers and diffusers are typed loosely)."""
    loaded = import_module(module)
    return tuple(getattr(loaded, name) for name in names)


@contextmanager
def seeded() -> Iterator[None]:
    """Weights drawn from ``SEED``, leaving the global random state as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        yield


def media_chat_template(image: str = "", video: str = "", audio: str = "") -> str:
    """The chat template with each kind of media block rendered as the model's media tokens."""
    return MEDIA_CHAT_TEMPLATE.replace("IMAGE", image).replace("VIDEO", video).replace("AUDIO", audio)


def printable_generation(tokenizer: Any, **defaults: Any) -> Any:
    """A generation config that never emits special or unprintable tokens (the end of sequence stays allowed)."""
    (GenerationConfig,) = imported("transformers", "GenerationConfig")

    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pieces = {index: tokenizer.decode([index], skip_special_tokens=True) for index in range(len(tokenizer))}
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id}
    return GenerationConfig(suppress_tokens=tiny_models.unprintable_token_ids(pieces, {eos}), **{**ids, **defaults})


def wordpiece_tokenizer(mask_token: str = "[MASK]") -> Any:
    """A BERT WordPiece tokenizer over the words of a few sentences and single characters ([PAD], [UNK], [CLS],
    [SEP] and ``mask_token``): a fixed vocabulary, so the same every time (WordPiece training breaks ties
    differently from run to run)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    (BertTokenizerFast,) = imported("transformers", "BertTokenizerFast")

    words = sorted({word.lower() for sentence in SENTENCES for word in sentence.split()})
    characters = "abcdefghijklmnopqrstuvwxyz0123456789.,?!'-"
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", mask_token, *characters, *(f"##{c}" for c in characters), *words]
    raw = Tokenizer(models.WordPiece({piece: index for index, piece in enumerate(pieces)}, unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.add_special_tokens(pieces[:5])
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", raw.token_to_id("[CLS]")), ("[SEP]", raw.token_to_id("[SEP]"))],
    )
    return BertTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token=mask_token,
        model_max_length=128,
    )


def clip_tokenizer(max_length: int = 64) -> Any:
    """A CLIP tokenizer without merges: every byte-level character (alone or ending a word) is a token."""
    (CLIPTokenizer,) = imported("transformers", "CLIPTokenizer")
    (bytes_to_unicode,) = imported("transformers.convert_slow_tokenizer", "bytes_to_unicode")

    characters = sorted(set(bytes_to_unicode().values()))
    pieces = [*characters, *(character + "</w>" for character in characters), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={piece: index for index, piece in enumerate(pieces)}, merges=[], model_max_length=max_length
    )


def t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer over the words of a few sentences and single characters."""
    (T5Tokenizer,) = imported("transformers", "T5Tokenizer")

    words = sorted({word for sentence in SENTENCES for word in sentence.split()} | {"happy", "rock", "music"})
    characters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    vocab += [("\u2581" + word, -1.0) for word in words] + [(character, -5.0) for character in characters]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def bpe_tokenizer(*special: str) -> Any:
    """The byte-level BPE tokenizer of ``modelcluster/tiny-chat`` with extra special tokens."""
    tokenizer = tiny_models.bpe_tokenizer()
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
    return tokenizer


def bert_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The one-layer BERT shape of the text models (and LayoutLM) over ``tokenizer``."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


def llama_text_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **extra,
    }


# --- text -----------------------------------------------------------------------------------------------------------

#: The BERT head of each text task, and its labels.
BERT_TASKS: dict[str, tuple[str, dict[int, str]]] = {
    "fill-mask": ("BertForMaskedLM", {}),
    "text-classification": ("BertForSequenceClassification", {0: "NEGATIVE", 1: "POSITIVE"}),
    "token-classification": ("BertForTokenClassification", {0: "O", 1: "B-PER", 2: "I-PER"}),
    "zero-shot-classification": ("BertForSequenceClassification", {0: "entailment", 1: "neutral", 2: "contradiction"}),
    "question-answering": ("BertForQuestionAnswering", {}),
}


def bert(directory: Path, task: str, mask_token: str = "[MASK]") -> Path:
    """A one-layer BERT with the head of ``task`` (:data:`BERT_TASKS`) and the WordPiece tokenizer (its mask token
    ``mask_token``)."""
    transformers: Any = import_module("transformers")

    class_name, labels = BERT_TASKS[task]
    tokenizer = wordpiece_tokenizer(mask_token)
    tokenizer.save_pretrained(directory)
    extra = {"id2label": labels, "label2id": {label: index for index, label in labels.items()}} if labels else {}
    with seeded():
        model = getattr(transformers, class_name)(transformers.BertConfig(**bert_config(tokenizer, **extra)))
    model.save_pretrained(directory)
    return directory


def gpt2(directory: Path) -> Path:
    """A one-layer GPT-2 over the tiny-chat BPE tokenizer, with its chat template."""
    GPT2Config, GPT2LMHeadModel = imported("transformers", "GPT2Config", "GPT2LMHeadModel")

    tokenizer = tiny_models.bpe_tokenizer(chat_template=tiny_models.CHAT_TEMPLATE)
    tokenizer.save_pretrained(directory)
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
    with seeded():
        GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def bart(directory: Path) -> Path:
    """A one-layer BART (summarization and any text-to-text task) over the tiny-chat BPE tokenizer."""
    BartConfig, BartForConditionalGeneration = imported("transformers", "BartConfig", "BartForConditionalGeneration")

    tokenizer = tiny_models.bpe_tokenizer()
    tokenizer.save_pretrained(directory)
    config = BartConfig(
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
    with seeded():
        model = BartForConditionalGeneration(config)
    model.generation_config = printable_generation(
        tokenizer, decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, min_new_tokens=1
    )
    model.save_pretrained(directory)
    return directory


def t5(directory: Path) -> Path:
    """T5 for translation (and any text-to-text task)."""
    T5Config, T5ForConditionalGeneration = imported("transformers", "T5Config", "T5ForConditionalGeneration")

    tokenizer = t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with seeded():
        model = T5ForConditionalGeneration(config)
    model.generation_config = printable_generation(tokenizer, decoder_start_token_id=tokenizer.pad_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


#: The one-layer wav2vec2 shape of the audio classifier and the speech recognizer (16 kHz audio).
WAV2VEC2_SIZES: dict[str, Any] = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": (16, 16),
    "conv_stride": (5, 4),
    "conv_kernel": (10, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def wav2vec2_classifier(directory: Path) -> Path:
    """A one-layer wav2vec2 audio classifier (speech, music) on 16 kHz audio."""
    Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification = imported(
        "transformers", "Wav2Vec2Config", "Wav2Vec2FeatureExtractor", "Wav2Vec2ForSequenceClassification"
    )
    config = Wav2Vec2Config(
        **WAV2VEC2_SIZES,
        classifier_proj_size=8,
        id2label={0: "speech", 1: "music"},
        label2id={"speech": 0, "music": 1},
    )
    with seeded():
        Wav2Vec2ForSequenceClassification(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(directory)
    return directory


#: What :func:`wav2vec2_ctc` transcribes any audio as.
CTC_TRANSCRIPT = "a"


def wav2vec2_ctc(directory: Path) -> Path:
    """A one-layer wav2vec2 speech recognizer (CTC) whose every frame says :data:`CTC_TRANSCRIPT`: the transcript
    of any audio is that letter once CTC merges the repeats."""
    import torch

    Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor = imported(
        "transformers",
        "Wav2Vec2Config",
        "Wav2Vec2CTCTokenizer",
        "Wav2Vec2FeatureExtractor",
        "Wav2Vec2ForCTC",
        "Wav2Vec2Processor",
    )
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{letter: 3 + i for i, letter in enumerate("abcdefghij")}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), pad_token="<pad>", unk_token="<unk>")
    processor = Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16000), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    with seeded():
        model = Wav2Vec2ForCTC(Wav2Vec2Config(**WAV2VEC2_SIZES, vocab_size=len(vocab), pad_token_id=0))
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(0.0)
        model.lm_head.bias[vocab[CTC_TRANSCRIPT]] = 10.0
    model.save_pretrained(directory)
    return directory


def bert_encoder(directory: Path) -> Path:
    """A one-layer BERT encoder without a head (feature extraction: mean-pooled token vectors of 32 values)."""
    BertConfig, BertModel = imported("transformers", "BertConfig", "BertModel")
    tokenizer = wordpiece_tokenizer()
    tokenizer.save_pretrained(directory)
    with seeded():
        BertModel(BertConfig(**bert_config(tokenizer))).save_pretrained(directory)
    return directory


# --- vision ---------------------------------------------------------------------------------------------------------


def vit(directory: Path) -> Path:
    """A one-layer ViT image classifier (cat, dog, bird) on 32x32 images."""
    ViTConfig, ViTForImageClassification, ViTImageProcessor = imported(
        "transformers", "ViTConfig", "ViTForImageClassification", "ViTImageProcessor"
    )

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
    with seeded():
        ViTForImageClassification(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def yolos(directory: Path) -> Path:
    """A one-layer YOLOS object detector (cat, dog): four detection tokens over 32x32 inputs."""
    YolosConfig, YolosForObjectDetection, YolosImageProcessor = imported(
        "transformers", "YolosConfig", "YolosForObjectDetection", "YolosImageProcessor"
    )
    config = YolosConfig(
        image_size=[32, 32],
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=4,
        id2label={0: "cat", 1: "dog"},
        label2id={"cat": 0, "dog": 1},
    )
    with seeded():
        YolosForObjectDetection(config).save_pretrained(directory)
    YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 32}).save_pretrained(directory)
    return directory


def segformer(directory: Path) -> Path:
    """SegFormer for semantic segmentation: three labels, 32x32 inputs."""
    SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor = imported(
        "transformers", "SegformerConfig", "SegformerForSemanticSegmentation", "SegformerImageProcessor"
    )

    labels = {0: "background", 1: "cat", 2: "dog"}
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        id2label=labels,
        label2id={label: index for index, label in labels.items()},
    )
    with seeded():
        SegformerForSemanticSegmentation(config).save_pretrained(directory)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def glpn(directory: Path) -> Path:
    """GLPN for depth estimation."""
    GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor = imported(
        "transformers", "GLPNConfig", "GLPNForDepthEstimation", "GLPNImageProcessor"
    )

    config = GLPNConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        head_in_index=-1,
    )
    with seeded():
        GLPNForDepthEstimation(config).save_pretrained(directory)
    GLPNImageProcessor(size_divisor=32).save_pretrained(directory)
    return directory


def sam(directory: Path) -> Path:
    """SAM for mask generation, on 64-pixel inputs."""
    (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    ) = imported(
        "transformers",
        "SamConfig",
        "SamImageProcessor",
        "SamMaskDecoderConfig",
        "SamModel",
        "SamProcessor",
        "SamPromptEncoderConfig",
        "SamVisionConfig",
    )

    vision = SamVisionConfig(
        hidden_size=16,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        window_size=2,
        global_attn_indexes=[1],
        num_pos_feats=8,
        mlp_dim=32,
    )
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=16
    )
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    with seeded():
        SamModel(config).save_pretrained(directory)
    image_processor = SamImageProcessor(
        size={"longest_edge": 64},
        pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16},
    )
    SamProcessor(image_processor=image_processor).save_pretrained(directory)
    return directory


def blip(directory: Path) -> Path:
    """BLIP captioning (no chat template: the question, if any, is the text prompt)."""
    BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor = imported(
        "transformers", "BlipConfig", "BlipForConditionalGeneration", "BlipImageProcessor", "BlipProcessor"
    )

    tokenizer = wordpiece_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "encoder_hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    with seeded():
        model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.generation_config = printable_generation(tokenizer, bos_token_id=tokenizer.cls_token_id)
    model.save_pretrained(directory)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(directory)
    return directory


def llava(directory: Path) -> Path:
    """Llava (CLIP vision tower, Llama text model) with a chat template: image-text-to-text and VQA."""
    CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor = (
        imported(
            "transformers",
            "CLIPImageProcessor",
            "CLIPVisionConfig",
            "LlamaConfig",
            "LlavaConfig",
            "LlavaForConditionalGeneration",
            "LlavaProcessor",
        )
    )

    tokenizer = bpe_tokenizer("<image>")
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**llama_text_config(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=16,  # (32 / 8) ** 2 patches
    )
    with seeded():
        model = LlavaForConditionalGeneration(config)
    model.generation_config = printable_generation(tokenizer)
    model.save_pretrained(directory)
    LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=media_chat_template(image="<image>"),
    ).save_pretrained(directory)
    return directory


def layoutlm(directory: Path) -> Path:
    """LayoutLM for extractive document question answering over given words and boxes."""
    LayoutLMConfig, LayoutLMForQuestionAnswering = imported(
        "transformers", "LayoutLMConfig", "LayoutLMForQuestionAnswering"
    )

    tokenizer = wordpiece_tokenizer()
    config = LayoutLMConfig(**bert_config(tokenizer))
    with seeded():
        LayoutLMForQuestionAnswering(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def clip_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    tokenizer = clip_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    return text, vision


def clip(directory: Path) -> Path:
    """CLIP for zero-shot image classification."""
    CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor = imported(
        "transformers", "CLIPConfig", "CLIPImageProcessor", "CLIPModel", "CLIPProcessor"
    )

    text, vision = clip_configs()
    with seeded():
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(directory)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=clip_tokenizer(),
    ).save_pretrained(directory)
    return directory


def owlvit(directory: Path) -> Path:
    """OWL-ViT for zero-shot object detection: one box per 8x8 patch of a 32x32 input, 16 in all."""
    OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor = imported(
        "transformers", "OwlViTConfig", "OwlViTForObjectDetection", "OwlViTImageProcessor", "OwlViTProcessor"
    )

    text, vision = clip_configs()
    with seeded():
        OwlViTForObjectDetection(
            OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
        ).save_pretrained(directory)
    OwlViTProcessor(
        image_processor=OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=clip_tokenizer(),
    ).save_pretrained(directory)
    return directory


def videomae(directory: Path) -> Path:
    """VideoMAE for video classification: four 32x32 frames."""
    VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor = imported(
        "transformers", "VideoMAEConfig", "VideoMAEForVideoClassification", "VideoMAEImageProcessor"
    )

    labels = {0: "walking", 1: "running", 2: "dancing"}
    config = VideoMAEConfig(
        image_size=32,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=labels,
        label2id={label: index for index, label in labels.items()},
    )
    with seeded():
        VideoMAEForVideoClassification(config).save_pretrained(directory)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def qwen2_vl(directory: Path) -> Path:
    """Qwen2-VL for video-text-to-text: frames merged into tokens of 16x16 pixels."""
    Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor = (
        imported(
            "transformers",
            "Qwen2VLConfig",
            "Qwen2VLForConditionalGeneration",
            "Qwen2VLImageProcessor",
            "Qwen2VLProcessor",
            "Qwen2VLVideoProcessor",
        )
    )

    special = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    tokenizer = bpe_tokenizer(*special)
    start, end, image, video = (tokenizer.convert_tokens_to_ids(token) for token in special)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}  # sums to head_dim / 2
    config = Qwen2VLConfig(
        text_config=llama_text_config(tokenizer, rope_parameters=rope),
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=start,
        vision_end_token_id=end,
    )
    with seeded():
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = printable_generation(tokenizer)
    model.save_pretrained(directory)
    pixels = {
        "size": {"shortest_edge": 16 * 16, "longest_edge": 32 * 32},
        "patch_size": 8,
        "merge_size": 2,
        "temporal_patch_size": 2,
    }
    Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=media_chat_template(
            image="<|vision_start|><|image_pad|><|vision_end|>", video="<|vision_start|><|video_pad|><|vision_end|>"
        ),
    ).save_pretrained(directory)
    return directory


# --- audio ----------------------------------------------------------------------------------------------------------


def qwen2_audio(directory: Path) -> Path:
    """Qwen2-Audio for audio-text-to-text: 16 mel bins over one-second windows."""
    Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor = imported(
        "transformers",
        "Qwen2AudioConfig",
        "Qwen2AudioForConditionalGeneration",
        "Qwen2AudioProcessor",
        "WhisperFeatureExtractor",
    )

    tokenizer = bpe_tokenizer("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")
    config = Qwen2AudioConfig(
        audio_config={
            "num_mel_bins": 16,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 32,
            "d_model": 16,
            "max_source_positions": 50,  # 100 mel frames a second, halved by the encoder's convolution
        },
        text_config={"model_type": "qwen2", **llama_text_config(tokenizer)},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    with seeded():
        model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config = printable_generation(tokenizer)
    model.save_pretrained(directory)
    Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, chunk_length=1),
        tokenizer=tokenizer,
        chat_template=media_chat_template(audio="<|audio_bos|><|AUDIO|><|audio_eos|>"),
    ).save_pretrained(directory)
    return directory


def vits(directory: Path) -> Path:
    """VITS for text-to-speech (characters in, a 16 kHz waveform out)."""
    VitsConfig, VitsModel, VitsTokenizer = imported("transformers", "VitsConfig", "VitsModel", "VitsTokenizer")

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {
        "<pad>": 0,
        " ": 1,
        **{character: 2 + index for index, character in enumerate("abcdefghijklmnopqrstuvwxyz'")},
    }
    (directory / "vocab.json").write_text(json.dumps(vocab))
    VitsTokenizer(
        str(directory / "vocab.json"), pad_token="<pad>", unk_token="<pad>", phonemize=False, add_blank=True
    ).save_pretrained(directory)
    config = VitsConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=17,
        upsample_initial_channel=16,
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        depth_separable_num_layers=1,
        duration_predictor_filter_channels=16,
        duration_predictor_num_flows=1,
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        sampling_rate=16000,
        pad_token_id=0,
    )
    with seeded():
        VitsModel(config).save_pretrained(directory)
    return directory


#: MusicGen: each generated step is one EnCodec frame of ``MUSICGEN_HOP`` samples; the delay pattern of its
#: ``MUSICGEN_CODEBOOKS`` codebooks costs ``MUSICGEN_CODEBOOKS - 1`` steps.
MUSICGEN_HOP = 16
MUSICGEN_CODEBOOKS = 2
MUSICGEN_RATE = 16000


def musicgen(directory: Path) -> Path:
    """MusicGen (T5 text encoder, EnCodec audio codec) for text-to-audio."""
    (
        EncodecConfig,
        EncodecFeatureExtractor,
        GenerationConfig,
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    ) = imported(
        "transformers",
        "EncodecConfig",
        "EncodecFeatureExtractor",
        "GenerationConfig",
        "MusicgenConfig",
        "MusicgenForConditionalGeneration",
        "MusicgenProcessor",
        "T5Config",
    )
    (MusicgenDecoderConfig,) = imported("transformers.models.musicgen.configuration_musicgen", "MusicgenDecoderConfig")

    tokenizer = t5_tokenizer()
    codebook_size = 16
    text_encoder = T5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0
    )
    audio_encoder = EncodecConfig(
        hidden_size=8,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[4, 4],  # MUSICGEN_HOP samples a frame
        codebook_size=codebook_size,
        codebook_dim=8,
        sampling_rate=MUSICGEN_RATE,
        target_bandwidths=[20.0],  # 2 quantizers at 1000 frames a second
        num_lstm_layers=1,
        compress=1,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=codebook_size,
        max_position_embeddings=64,
        num_hidden_layers=1,
        ffn_dim=32,
        num_attention_heads=2,
        hidden_size=16,
        num_codebooks=MUSICGEN_CODEBOOKS,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
    )
    config = MusicgenConfig(
        text_encoder=text_encoder.to_dict(), audio_encoder=audio_encoder.to_dict(), decoder=decoder.to_dict()
    )
    with seeded():
        model = MusicgenForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=codebook_size, pad_token_id=codebook_size, max_new_tokens=8, do_sample=False
    )
    model.save_pretrained(directory)
    MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=MUSICGEN_RATE), tokenizer=tokenizer
    ).save_pretrained(directory)
    return directory


# --- diffusion ------------------------------------------------------------------------------------------------------


def diffusion_parts() -> dict[str, Any]:
    """The VAE, CLIP text encoder, tokenizer and scheduler shared by the tiny image and video pipelines."""
    AutoencoderKL, DDIMScheduler = imported("diffusers", "AutoencoderKL", "DDIMScheduler")
    CLIPTextConfig, CLIPTextModel = imported("transformers", "CLIPTextConfig", "CLIPTextModel")

    tokenizer = clip_tokenizer(max_length=32)
    with seeded():
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                max_position_embeddings=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        vae = AutoencoderKL(
            block_out_channels=(8,),
            layers_per_block=1,
            norm_num_groups=4,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",),
            sample_size=8,
        )
    scheduler = DDIMScheduler(
        num_train_timesteps=10, beta_schedule="linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def unet_blocks(dimensions: int) -> dict[str, Any]:
    suffix = f"{dimensions}D"
    return {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": 16,
        "attention_head_dim": 2,
        "down_block_types": (f"CrossAttnDownBlock{suffix}", f"DownBlock{suffix}"),
        "up_block_types": (f"UpBlock{suffix}", f"CrossAttnUpBlock{suffix}"),
    }


def stable_diffusion(directory: Path) -> Path:
    """Stable Diffusion (UNet, VAE with a scale factor of 1, CLIP text encoder): 8x8 images by default."""
    StableDiffusionPipeline, UNet2DConditionModel = imported(
        "diffusers", "StableDiffusionPipeline", "UNet2DConditionModel"
    )

    with seeded():
        unet = UNet2DConditionModel(**unet_blocks(2))
    StableDiffusionPipeline(
        unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **diffusion_parts()
    ).save_pretrained(directory)
    return directory


def text_to_video_sd(directory: Path) -> Path:
    """The text-to-video Stable Diffusion pipeline with a 3D UNet: 8x8 frames by default."""
    TextToVideoSDPipeline, UNet3DConditionModel = imported("diffusers", "TextToVideoSDPipeline", "UNet3DConditionModel")

    with seeded():
        unet = UNet3DConditionModel(**unet_blocks(3))
    TextToVideoSDPipeline(unet=unet, **diffusion_parts()).save_pretrained(directory)
    return directory


def ddpm(directory: Path) -> Path:
    """A DDPM pipeline (a two-block UNet, ten training steps) for unconditional 8x8 images."""
    DDPMPipeline, DDPMScheduler, UNet2DModel = imported("diffusers", "DDPMPipeline", "DDPMScheduler", "UNet2DModel")
    with seeded():
        unet = UNet2DModel(
            sample_size=8,
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(directory)
    return directory

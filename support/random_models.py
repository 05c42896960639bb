"""Randomly initialised BLIP-2, LLaVA and Qwen-VL (2.5 and 3), tiny or at their published sizes, saved where ``load_vlm`` reads.

Tests and the CPU benchmark use the tiny ones (no weights can be downloaded here); the GPU benchmark
uses the real-size architectures, whose cost does not depend on the weight values. The tokenizer is a
word-level one trained on a few sentences, so nothing is fetched. ``TINY_ARCHITECTURE`` is the same for
CLIP: a random-initialised open_clip model that ``filters.clip`` loads from ``write_architecture``'s file.
``generate_ids`` is the captioners' generation without the decoding, for the tests of batching and padding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from captioning.config import GenerationConfig
from captioning.vlm import Vlm, generate_from, model_inputs

IMAGE_TOKEN = "<image>"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]
CORPUS = [
    "USER: ASSISTANT: Describe this image in one detailed sentence.",
    "Describe this image in a few words. Question: what is in the picture? Answer:",
    "a photo of a dog sitting on a red couch next to a window",
    "a close up of a cat lying in the grass on a sunny day",
    "two people riding bicycles down a city street at night",
    "a bowl of fruit with apples bananas and oranges on a wooden table",
    "The original caption reads: alt text for the picture",
]
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def word_level(corpus: list[str], specials: list[str]) -> Any:
    """A word-level ``tokenizers.Tokenizer`` trained on ``corpus``, split on whitespace, with ``specials``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    return tok


def tiny_tokenizer() -> Any:
    """A word-level fast tokenizer (<s> prepended, left padding) trained on CORPUS."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = word_level(CORPUS, SPECIALS)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=[IMAGE_TOKEN], padding_side="left")


def _blip2_config(tokenizer: Any, real_size: bool, vocab: int) -> Any:
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    image_token = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    if real_size:  # Salesforce/blip2-opt-2.7b: ViT-g/14, 12-layer Q-Former, OPT-2.7b
        text = OPTConfig(vocab_size=50272, hidden_size=2560, num_hidden_layers=32, ffn_dim=10240,
                         num_attention_heads=32, word_embed_proj_dim=2560, **ids)
        return Blip2Config(vision_config=Blip2VisionConfig().to_dict(), qformer_config=Blip2QFormerConfig().to_dict(),
                           text_config=text.to_dict(), num_query_tokens=32, image_token_index=image_token)
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=32, patch_size=8, initializer_range=0.02)
    qformer = Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 encoder_hidden_size=32, vocab_size=vocab)
    text = OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                     word_embed_proj_dim=32, max_position_embeddings=128,
                     tie_word_embeddings=False, **ids)  # tied random embeddings only echo the input
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=4, image_token_index=image_token)


def build_blip2(real_size: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a random BLIP-2 in float32 on CPU."""
    from transformers import BlipImageProcessor, Blip2ForConditionalGeneration, Blip2Processor

    tokenizer = tiny_tokenizer()
    config = _blip2_config(tokenizer, real_size, vocab=len(tokenizer))
    side = config.vision_config.image_size
    images = BlipImageProcessor(size={"height": side, "width": side})
    processor = Blip2Processor(images, tokenizer, num_query_tokens=config.num_query_tokens)
    return Blip2ForConditionalGeneration(config).eval(), processor


def _llava_config(tokenizer: Any, real_size: bool, vocab: int) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    if real_size:  # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336, Vicuna-7B
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, **ids)
    else:
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8, projection_dim=32)
        text = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, **ids)
    return LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                       image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                       vision_feature_layer=-2, vision_feature_select_strategy="default")


def build_llava(real_size: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a random LLaVA-1.5 in float32 on CPU."""
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = tiny_tokenizer()
    config = _llava_config(tokenizer, real_size, vocab=len(tokenizer))
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    images = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(images, tokenizer, patch_size=patch, vision_feature_select_strategy="default",
                               chat_template=LLAVA_TEMPLATE, num_additional_image_tokens=1)
    return LlavaForConditionalGeneration(config).eval(), processor


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<unk>"]
QWEN_TEMPLATE = (  # Qwen-VL's chat format, images as <|vision_start|><|image_pad|><|vision_end|>
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer() -> Any:
    """A word-level tokenizer with Qwen-VL's special tokens (no <s>; <|im_end|> ends an answer)."""
    from transformers import PreTrainedTokenizerFast

    tok = word_level(CORPUS + ["user assistant system"], QWEN_SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>", padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    return ids


def _qwen_text(tokenizer: Any, real_size: bool, mrope: list[int], **extra: Any) -> dict:
    ids = dict(bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if real_size:  # Qwen/Qwen2.5-VL-7B-Instruct's language model
        return dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}, **ids)
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}, **ids, **extra)


def build_qwen2_5_vl(real_size: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a random Qwen2.5-VL in float32 on CPU (real size: Qwen2.5-VL-7B-Instruct)."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = qwen_tokenizer()
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                  fullatt_block_indexes=[7, 15, 23, 31], window_size=112) if real_size else \
        dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
             fullatt_block_indexes=[1], window_size=56)
    config = Qwen2_5_VLConfig(vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, **vision),
                              text_config=_qwen_text(tokenizer, real_size, [2, 2, 4]), **_qwen_ids(tokenizer))
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    return Qwen2_5_VLForConditionalGeneration(config).eval(), processor


def build_qwen3_vl(real_size: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a tiny random Qwen3-VL (16 px patches, deepstack features) in float32 on CPU."""
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    if real_size:
        raise ValueError("only a tiny Qwen3-VL is built here; the GPU bench sizes Qwen2.5-VL-7B")
    tokenizer = qwen_tokenizer()
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[1])
    config = Qwen3VLConfig(vision_config=vision, text_config=_qwen_text(tokenizer, False, [2, 3, 3], head_dim=16),
                           **_qwen_ids(tokenizer))
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    return Qwen3VLForConditionalGeneration(config).eval(), processor


BUILDERS = {"blip2": build_blip2, "llava": build_llava, "qwen2_5_vl": build_qwen2_5_vl, "qwen3_vl": build_qwen3_vl}


def generate_ids(vlm: Vlm, images: list[Image.Image], prompts: list[str], gen: GenerationConfig) -> Any:
    """Token ids generated after each prompt, shape (batch, new tokens); greedy unless num_beams > 1."""
    return generate_from(vlm, model_inputs(vlm, images, prompts), gen)


def save_random(kind: str, out: Path, real_size: bool = False) -> Path:
    """Build a random ``kind`` (a BUILDERS key) and save it as a model directory ``load_vlm`` accepts."""
    model, processor = BUILDERS[kind](real_size)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# A CLIP small enough to build in a second on a CPU: the same code path as ViT-B-32 and ViT-L-14, for tests
# and CPU benchmarks with random weights (``pretrained: null``). open_clip reads it like its own configs.
TINY_ARCHITECTURE = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def write_architecture(folder: Path, name: str, architecture: dict = TINY_ARCHITECTURE) -> Path:
    """Write an open_clip model-config JSON; point ``architecture_file`` at it and set ``model`` to ``name``."""
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(architecture))
    return path

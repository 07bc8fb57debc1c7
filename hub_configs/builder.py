"""Assembles a stage-1 SALOVA model and its processor from pretrained component checkpoints (Hub ids or folders).

The vision tower, the query encoder and the query tokenizer come from one SigLIP/CLIP checkpoint, the LLM (and
its LM head and tokenizer) from a causal-LM checkpoint; the connector, router, query projection and projector
start fresh. The processor gets the chat template of the variant's LLM family (`chat_templates/`).
The query encoder's position table grows to `router_max_query_tokens` rows: the pretrained rows are copied,
the new ones freshly initialised.
"""

import json
from pathlib import Path

import torch
from salova.modeling import SalovaConfig, SalovaForConditionalGeneration
from salova.modeling.modeling_salova import TOWER_CLASSES, truncate_vision_tower
from salova.processing import (
    TOWER_PRESETS,
    SalovaProcessor,
    SalovaVideoProcessor,
    tower_video_settings,
    with_list_content,
)
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from .tiny_tokenizer import END_OF_TURN, VIDEO_TOKEN, build_tiny_tokenizer

VARIANTS = {"tiny": "salova-tiny", "3b": "salova-3b", "3.8b": "salova-3.8b", "7b": "salova-7b"}
CHAT_TEMPLATES = ("qwen2.5", "llama-3.2", "phi-3.5", "plain")
# SALOVA truncates router queries at 1024 tokens (the position table has room for 2048).
QUERY_MAX_LENGTH = 1024


def load_variant(variant: str) -> dict:
    """The spec of a published variant (`tiny`, `3b`, `3.8b`, `7b`): component ids and SALOVA settings."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown SALOVA variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    return json.loads((Path(__file__).parent / f"{VARIANTS[variant]}.json").read_text())


def load_chat_template(name: str) -> str:
    """A chat template shipped with the package: one per LLM family, and `plain` (stages 1 and 1.5).

    The files are written for string message content; the template returned also renders content lists (video
    and text items), as the processor's `apply_chat_template` passes them.
    """
    if name not in CHAT_TEMPLATES:
        raise ValueError(f"Unknown chat template {name!r}; choose one of {CHAT_TEMPLATES}.")
    return with_list_content((Path(__file__).parent / "chat_templates" / f"{name}.jinja").read_text(), VIDEO_TOKEN)


def build_processor(
    config: SalovaConfig,
    tokenizer: PreTrainedTokenizerBase,
    query_tokenizer: PreTrainedTokenizerBase,
    chat_template: str = "qwen2.5",
) -> SalovaProcessor:
    """The processor matching `config`: tower input size and normalisation, placeholder layout, segment limits.

    The tokenizer's `model_max_length` becomes the LLM's position table, so that longer prompts are refused.
    """
    video_processor = SalovaVideoProcessor(
        **tower_video_settings(config.vision_config.image_size, **TOWER_PRESETS[config.tower_config.model_type]),
        max_frames_per_segment=config.max_frames_per_segment,
        max_segments=config.router_max_segments,
    )
    tokenizer.model_max_length = config.text_config.max_position_embeddings
    return SalovaProcessor(
        video_processor,
        tokenizer,
        query_tokenizer,
        chat_template=load_chat_template(chat_template),
        video_token=VIDEO_TOKEN,
        num_latents=config.connector_num_latents,
        num_focus_segments=config.num_focus_segments,
        query_max_length=min(QUERY_MAX_LENGTH, config.router_max_query_tokens),
    )


def build_salova(
    variant: str,
    vision_tower: str | None = None,
    llm: str | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    """A stage-1 model and its processor for `variant`.

    `vision_tower` / `llm` override the variant's components. The tiny variant without components is a
    random model with tokenizers trained on the spot; with components it uses the tiny variant's settings.
    """
    spec = load_variant(variant)
    vision_tower = vision_tower or spec["vision_tower"]
    llm = llm or spec["llm"]
    torch.manual_seed(seed)
    if vision_tower is None and llm is None:
        return _build_random(spec, dtype)
    if vision_tower is None or llm is None:
        raise ValueError(
            f"Variant {variant!r} has no default {'vision tower' if vision_tower is None else 'LLM'}: "
            "pass both --vision-tower and --llm, or neither."
        )
    return assemble_from_components(vision_tower, llm, spec["settings"], dtype, spec["chat_template"])


def _build_random(spec: dict, dtype: torch.dtype) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    tokenizer = build_tiny_tokenizer()
    text_config = {**spec["text_config"], "vocab_size": max(spec["text_config"]["vocab_size"], len(tokenizer))}
    config = SalovaConfig(
        tower_config=spec["tower_config"],
        text_config=text_config,
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        **spec["settings"],
    )
    model = SalovaForConditionalGeneration(config).to(dtype)
    # Like Qwen2.5-Instruct's generation config: a reply ends at the end of its turn or at the end of text.
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    query_tokenizer = build_tiny_tokenizer(vocab_size=config.query_encoder_config.vocab_size, with_video_token=False)
    return model, build_processor(config, tokenizer, query_tokenizer, spec["chat_template"])


def assemble_from_components(
    vision_tower: str, llm: str, settings: dict, dtype: torch.dtype = torch.float32, chat_template: str = "qwen2.5"
) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    tower_config = AutoConfig.from_pretrained(vision_tower)
    if tower_config.model_type not in TOWER_CLASSES:
        raise ValueError(
            f"{vision_tower} is a {tower_config.model_type!r} checkpoint; the vision tower must be a SigLIP or CLIP "
            "dual encoder (vision and text halves)."
        )
    query_positions = settings.get("router_max_query_tokens", SalovaConfig().router_max_query_tokens)
    if tower_config.model_type == "siglip":
        tower_config.vision_config.vision_use_head = False
    tower_config.text_config.max_position_embeddings = query_positions

    tokenizer = AutoTokenizer.from_pretrained(llm)
    if VIDEO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN]})
    config = SalovaConfig(
        tower_config=tower_config.to_dict(),
        text_config=AutoConfig.from_pretrained(llm).to_dict(),
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        dtype=dtype,
        **settings,
    )
    with torch.device("meta"):
        model = SalovaForConditionalGeneration(config)

    vision_class, query_encoder_class = TOWER_CLASSES[tower_config.model_type]
    vision = vision_class.from_pretrained(vision_tower, config=config.vision_config, dtype=dtype)
    query_encoder = query_encoder_class.from_pretrained(vision_tower, dtype=dtype)
    extend_position_table(query_encoder, query_positions)
    query_encoder.config = config.query_encoder_config
    language_model = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype)

    truncate_vision_tower(vision, config)
    model.model.vision_tower = vision
    model.model.query_encoder = query_encoder
    model.model.language_model = language_model.base_model
    model.lm_head = language_model.get_output_embeddings()
    for fresh in (model.model.query_projection, model.model.connector, model.model.router, model.model.projector):
        fresh.to_empty(device="cpu").to(dtype)
        fresh.apply(model._init_weights)
    if config.tie_word_embeddings:
        model.tie_weights()
    if config.video_token_id >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config = language_model.generation_config

    still_empty = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if still_empty:
        raise RuntimeError(f"The assembled model left tensors uninitialised: {still_empty[:5]}")
    return model, build_processor(config, tokenizer, AutoTokenizer.from_pretrained(vision_tower), chat_template)


def extend_position_table(text_model: nn.Module, num_positions: int) -> None:
    """Grows a SigLIP/CLIP text model's position table to `num_positions` rows, pretrained rows first."""
    embeddings = text_model.embeddings
    old = embeddings.position_embedding.weight
    if num_positions < old.shape[0]:
        raise ValueError(f"Cannot shrink the text position table from {old.shape[0]} to {num_positions} rows.")
    table = nn.Embedding(num_positions, old.shape[1], dtype=old.dtype, device=old.device)
    std = getattr(text_model.config, "initializer_range", 0.02)
    with torch.no_grad():
        table.weight.normal_(mean=0.0, std=std)
        table.weight[: old.shape[0]] = old
    embeddings.position_embedding = table
    embeddings.position_ids = torch.arange(num_positions, device=old.device).expand((1, -1))
    text_model.config.max_position_embeddings = num_positions

"""Assembles a stage-1 SALOVA model and its processor from two components, each pretrained (a Hub id or a folder)
or random (a variant's architecture, `components/` for the published ones, built offline).

The vision tower, the query encoder and the query tokenizer come from one SigLIP/CLIP dual encoder, the LLM (and
its LM head and tokenizer) from a causal LM; the connector, router, query projection and projector start fresh.
The processor gets a pretrained LLM's own chat template, or the variant's LLM family's (`chat_templates/`).
A pretrained query encoder's position table grows to `router_max_query_tokens` rows: the pretrained rows are
copied, the new ones freshly initialised.
"""

import copy
import json
from dataclasses import dataclass
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
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerBase

from .tiny_tokenizer import VIDEO_TOKEN, build_layout_tokenizer, build_tiny_tokenizer

# The published variants: one `salova-<variant>.json` spec each, beside this file.
VARIANT_FILES = {
    path.stem.removeprefix("salova-"): path for path in sorted(Path(__file__).parent.glob("salova-*.json"))
}
VARIANTS = tuple(VARIANT_FILES)
CHAT_TEMPLATES = ("qwen2.5", "llama-3.2", "phi-3.5", "plain")
# The pad token given to an LLM tokenizer that has neither a reserved pad token nor an end-of-sequence token.
PAD_TOKEN = "<|pad|>"


def load_variant(variant: str) -> dict:
    """The spec of a published variant (`tiny`, `3b`, `3.8b`, `7b`): component ids and SALOVA settings."""
    if variant not in VARIANT_FILES:
        raise ValueError(f"Unknown SALOVA variant {variant!r}; choose one of {VARIANTS}.")
    return json.loads(VARIANT_FILES[variant].read_text())


def load_chat_template(name: str) -> str:
    """A chat template shipped with the package: one per LLM family, and `plain` (stages 1 and 1.5).

    The files are written for string message content; the template returned also renders content lists (video
    and text items), as the processor's `apply_chat_template` passes them.
    """
    if name not in CHAT_TEMPLATES:
        raise ValueError(f"Unknown chat template {name!r}; choose one of {CHAT_TEMPLATES}.")
    return with_list_content(_template_file(name), VIDEO_TOKEN)


def build_processor(
    config: SalovaConfig,
    tokenizer: PreTrainedTokenizerBase,
    query_tokenizer: PreTrainedTokenizerBase,
    chat_template: str = "qwen2.5",
) -> SalovaProcessor:
    """The processor matching `config`: tower input size and normalisation, placeholder layout, segment limits.

    `chat_template`: a name of `CHAT_TEMPLATES` or a template's text. The tokenizer's `model_max_length` becomes the
    LLM's position table, so that longer prompts are refused.
    """
    if chat_template in CHAT_TEMPLATES:
        chat_template = load_chat_template(chat_template)
    video_processor = SalovaVideoProcessor(
        **tower_video_settings(config.vision_config.image_size, **TOWER_PRESETS[config.tower_config.model_type]),
        router_max_segments=config.router_max_segments,
        max_frames_per_segment=config.max_frames_per_segment,
    )
    tokenizer.model_max_length = config.text_config.max_position_embeddings
    processor = SalovaProcessor(
        video_processor,
        tokenizer,
        query_tokenizer,
        chat_template=with_list_content(chat_template, VIDEO_TOKEN),
        video_token=VIDEO_TOKEN,
    )
    processor.follow_model_config(config)
    return processor


@dataclass
class Component:
    """One half of a SALOVA model: the vision tower (a SigLIP/CLIP dual encoder with its text tokenizer, the query
    tokenizer) or the LLM (with its tokenizer). `source`: the folder or Hub id its weights load from, or None for
    random weights; `name`: how messages name it; `end_tokens`: where a random LLM's replies end."""

    config: PreTrainedConfig
    tokenizer: PreTrainedTokenizerBase
    source: str | None
    name: str
    end_tokens: tuple[str, ...] = ()


def build_salova(
    variant: str,
    vision_tower: str | None = None,
    llm: str | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    random_weights: bool = False,
    depth: int | None = None,
) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    """A stage-1 model and its processor for `variant`.

    `vision_tower` / `llm` (folder or Hub id) replace the variant's components, each alone or both. Without them, a
    published variant loads its pretrained components from the Hub, or, with `random_weights`, builds their published
    architectures (`components/`) with random weights and tokenizers made on the spot with the published layouts;
    the tiny variant is random. `depth` keeps that many layers in each random stack (towers and LLM).
    """
    spec = load_variant(variant)
    torch.manual_seed(seed)
    tower = vision_tower or (None if random_weights else spec["vision_tower"])
    llm = llm or (None if random_weights else spec["llm"])
    tower_part = pretrained_tower(tower) if tower else random_tower(spec, depth)
    llm_part = pretrained_llm(llm) if llm else random_llm(spec, depth)
    return assemble(tower_part, llm_part, spec["settings"], dtype, spec["chat_template"])


def load_component(hub_id: str) -> dict:
    """The published architecture and tokenizer layout of a component (`components/<org>--<name>.json`)."""
    path = Path(__file__).parent / "components" / f"{hub_id.replace('/', '--')}.json"
    if not path.is_file():
        raise ValueError(f"No published architecture of {hub_id} is kept in {path.parent}.")
    return json.loads(path.read_text())


def pretrained_tower(source: str) -> Component:
    config = AutoConfig.from_pretrained(source)
    if config.model_type not in TOWER_CLASSES:
        raise ValueError(
            f"{source} is a {config.model_type!r} checkpoint; the vision tower must be a SigLIP or CLIP dual encoder "
            "(vision and text halves)."
        )
    return Component(config, AutoTokenizer.from_pretrained(source), source, f"vision tower {source}")


def pretrained_llm(source: str) -> Component:
    return Component(AutoConfig.from_pretrained(source), AutoTokenizer.from_pretrained(source), source, f"LLM {source}")


def random_tower(spec: dict, depth: int | None = None) -> Component:
    """The variant's tower architecture with random weights; its query tokenizer made on the spot."""
    if spec["vision_tower"] is None:
        config = _config(spec["tower_config"], depth)
        tokenizer = build_tiny_tokenizer(vocab_size=config.text_config.vocab_size, with_video_token=False)
        return Component(config, tokenizer, None, "the tiny vision tower")
    published = load_component(spec["vision_tower"])
    tokenizer = build_layout_tokenizer(published["tokenizer"])
    config = _config(published["config"], depth)
    # The published SigLIP config leaves its text tower's special ids at defaults outside its own vocabulary.
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config.text_config, name, getattr(tokenizer, name))
    return Component(config, tokenizer, None, f"random {spec['vision_tower']}")


def random_llm(spec: dict, depth: int | None = None) -> Component:
    """The variant's LLM architecture with random weights; its tokenizer made on the spot."""
    if spec["llm"] is None:
        tokenizer = build_tiny_tokenizer()
        config = _config(spec["text_config"], depth)
        config.vocab_size = max(config.vocab_size, len(tokenizer))
        return Component(config, tokenizer, None, "the tiny LLM", tuple(spec["generation_eos_tokens"]))
    published = load_component(spec["llm"])
    layout = published["tokenizer"]
    tokenizer = build_layout_tokenizer(layout, chat_template=_template_file(layout["chat_template"]))
    config = _config(published["config"], depth)
    return Component(config, tokenizer, None, f"random {spec['llm']}", tuple(layout["generation_eos_tokens"]))


def _config(settings: dict, depth: int | None) -> PreTrainedConfig:
    """A config from its published fields; `depth` replaces the layer count of every stack in it."""
    settings = copy.deepcopy(settings)
    if depth is not None:
        for stack in (settings, settings.get("vision_config"), settings.get("text_config")):
            if stack is not None:
                stack["num_hidden_layers"] = depth
    return AutoConfig.for_model(settings.pop("model_type"), **settings)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """Gives a tokenizer without a pad token one, and returns the pad token.

    Batches are padded (left for generation, right in training), and the labels and attention masks say which
    positions are padding, so the pad token's own meaning never matters. The choice follows Llama 3.1/3.2 practice:
    a special token the vocabulary reserves for padding (`<|finetune_right_pad_id|>`: any special token whose name
    holds "pad"), else the end-of-sequence token; only a tokenizer with neither gets a new `<|pad|>`.
    """
    if tokenizer.pad_token is None:
        reserved = [
            token.content
            for _, token in sorted(tokenizer.added_tokens_decoder.items())
            if token.special and "pad" in token.content.lower()
        ]
        tokenizer.pad_token = reserved[0] if reserved else tokenizer.eos_token or PAD_TOKEN
        if tokenizer.pad_token == PAD_TOKEN:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return tokenizer.pad_token


def assemble(
    tower: Component, llm: Component, settings: dict, dtype: torch.dtype = torch.float32, chat_template: str = "qwen2.5"
) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    """The stage-1 model of a tower and an LLM: pretrained parts load their weights, random ones are drawn, and the
    connector, router, query projection and projector start fresh. The processor takes the LLM tokenizer's own chat
    template when it has one, the variant's (`chat_template`) otherwise.
    """
    tower_config = copy.deepcopy(tower.config)
    query_positions = settings.get("router_max_query_tokens", SalovaConfig().router_max_query_tokens)
    if tower_config.model_type == "siglip":
        tower_config.vision_config.vision_use_head = False
    _check_fits(tower.tokenizer, tower_config.text_config.vocab_size, tower.name, "query tokenizer")
    tower_config.text_config.max_position_embeddings = query_positions

    tokenizer = llm.tokenizer
    own_template = tokenizer.chat_template if llm.source is not None else None
    _check_fits(tokenizer, llm.config.vocab_size, llm.name, "tokenizer")
    ensure_pad_token(tokenizer)
    if VIDEO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN]})
    try:
        config = SalovaConfig(
            tower_config=tower_config.to_dict(),
            text_config=llm.config.to_dict(),
            video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
            dtype=dtype,
            **settings,
        )
    except ValueError as error:
        raise ValueError(f"{tower.name} with {llm.name}: {error}") from error

    if tower.source is None and llm.source is None:
        model = SalovaForConditionalGeneration._from_config(config, dtype=dtype)
    else:
        model = _with_pretrained_parts(config, tower, llm, dtype, query_positions)
    if config.video_token_id >= model.get_input_embeddings().num_embeddings:
        # New rows drawn like the others: a start from the table's mean and covariance costs minutes at 128k rows.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    _set_generation_tokens(model, tokenizer, llm)
    processor = build_processor(config, tokenizer, tower.tokenizer, own_template or chat_template)
    return model, processor


def _with_pretrained_parts(
    config: SalovaConfig, tower: Component, llm: Component, dtype: torch.dtype, query_positions: int
) -> SalovaForConditionalGeneration:
    with torch.device("meta"):
        model = SalovaForConditionalGeneration(config)
    vision_class, query_encoder_class = TOWER_CLASSES[config.tower_config.model_type]
    if tower.source is None:
        vision = vision_class._from_config(config.vision_config, dtype=dtype)
        query_encoder = query_encoder_class._from_config(config.query_encoder_config, dtype=dtype)
    else:
        vision = vision_class.from_pretrained(tower.source, config=config.vision_config, dtype=dtype)
        query_encoder = query_encoder_class.from_pretrained(tower.source, dtype=dtype)
        extend_position_table(query_encoder, query_positions)
        query_encoder.config = config.query_encoder_config
    if llm.source is None:
        language_model = AutoModelForCausalLM.from_config(config.text_config, dtype=dtype)
    else:
        language_model = AutoModelForCausalLM.from_pretrained(llm.source, dtype=dtype)
        model.generation_config = language_model.generation_config
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
    still_empty = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if still_empty:
        raise RuntimeError(f"The assembled model left tensors uninitialised: {still_empty[:5]}")
    return model


def _check_fits(tokenizer: PreTrainedTokenizerBase, rows: int, component: str, what: str) -> None:
    """Every id the tokenizer gives must have a row in its embedding table."""
    if len(tokenizer) > rows:
        raise ValueError(
            f"{component}: its {what} has {len(tokenizer)} tokens but its embedding table only {rows} rows "
            "(vocab_size); ids past the table cannot be embedded."
        )


def _set_generation_tokens(model, tokenizer: PreTrainedTokenizerBase, llm: Component) -> None:
    """A pretrained LLM keeps its generation config; a random one ends its replies at `end_tokens`. Both pad with
    the tokenizer's pad token when the generation config names none."""
    generation = model.generation_config
    if llm.end_tokens:
        generation.eos_token_id = tokenizer.convert_tokens_to_ids(list(llm.end_tokens))
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id


def _template_file(name: str) -> str:
    """A shipped template as written, for string message content."""
    return (Path(__file__).parent / "chat_templates" / f"{name}.jinja").read_text()


def assemble_from_components(
    vision_tower: str, llm: str, settings: dict, dtype: torch.dtype = torch.float32, chat_template: str = "qwen2.5"
) -> tuple[SalovaForConditionalGeneration, SalovaProcessor]:
    """`assemble` of a pretrained tower and a pretrained LLM (folders or Hub ids)."""
    return assemble(pretrained_tower(vision_tower), pretrained_llm(llm), settings, dtype, chat_template)


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

"""Configs of the published SALOVA variants and the builder that assembles them from pretrained components."""

from .builder import (
    CHAT_TEMPLATES,
    VARIANTS,
    assemble,
    assemble_from_components,
    build_processor,
    build_salova,
    ensure_pad_token,
    extend_position_table,
    load_chat_template,
    load_component,
    load_variant,
    pretrained_llm,
    pretrained_tower,
    random_llm,
    random_tower,
)
from .tiny_tokenizer import VIDEO_TOKEN, build_layout_tokenizer, build_tiny_tokenizer

__all__ = [
    "CHAT_TEMPLATES",
    "build_processor",
    "load_chat_template",
    "VARIANTS",
    "VIDEO_TOKEN",
    "assemble",
    "assemble_from_components",
    "build_layout_tokenizer",
    "build_salova",
    "build_tiny_tokenizer",
    "ensure_pad_token",
    "extend_position_table",
    "load_component",
    "load_variant",
    "pretrained_llm",
    "pretrained_tower",
    "random_llm",
    "random_tower",
]

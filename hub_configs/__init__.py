"""Configs of the published SALOVA variants and the builder that assembles them from pretrained components."""

from .builder import (
    CHAT_TEMPLATES,
    VARIANTS,
    assemble_from_components,
    build_processor,
    build_salova,
    extend_position_table,
    load_chat_template,
    load_variant,
)
from .tiny_tokenizer import VIDEO_TOKEN, build_tiny_tokenizer

__all__ = [
    "CHAT_TEMPLATES",
    "build_processor",
    "load_chat_template",
    "VARIANTS",
    "VIDEO_TOKEN",
    "assemble_from_components",
    "build_salova",
    "build_tiny_tokenizer",
    "extend_position_table",
    "load_variant",
]

"""Asking a long video many questions: the per-video index, the answering core, the assistant commands, the
timeline and the app."""

from .answering import FINISH_REASONS, Answer, ContinuationScore, Scene, Usage, VideoAssistant, ask_with_index
from .index import (
    CorruptIndexError,
    EncodedVideo,
    IndexCache,
    IndexMismatchError,
    Provenance,
    SalovaVideoIndex,
    build_index,
)

__all__ = [
    "FINISH_REASONS",
    "Answer",
    "ContinuationScore",
    "CorruptIndexError",
    "EncodedVideo",
    "IndexCache",
    "IndexMismatchError",
    "Provenance",
    "SalovaVideoIndex",
    "Scene",
    "Usage",
    "VideoAssistant",
    "ask_with_index",
    "build_index",
]

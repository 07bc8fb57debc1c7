"""Asking a long video many questions: the per-video index, the assistant commands, the timeline and the app."""

from .answering import Answer, Scene, VideoAssistant, ask_with_index
from .index import CorruptIndexError, IndexCache, IndexMismatchError, Provenance, SalovaVideoIndex, build_index

__all__ = [
    "Answer",
    "CorruptIndexError",
    "IndexCache",
    "IndexMismatchError",
    "Provenance",
    "SalovaVideoIndex",
    "Scene",
    "VideoAssistant",
    "ask_with_index",
    "build_index",
]

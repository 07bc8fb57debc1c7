"""Turning videos and questions into SALOVA inputs: one-pass decoding with scene cuts, segments, prompts."""

from .frame_preprocessing import TOWER_PRESETS, FrameTransform, tower_video_settings
from .processing_salova import SalovaProcessor, SalovaProcessorKwargs, format_timestamp
from .scene_detection import SceneCutDetector
from .segmentation import SEGMENTERS, Segment, SegmentationPolicy, plan_segments, scene_tiling_boundaries
from .video_decoding import DecodedVideo, decode_video
from .video_processing_salova import SalovaVideoProcessor, SalovaVideoProcessorKwargs

__all__ = [
    "SEGMENTERS",
    "TOWER_PRESETS",
    "DecodedVideo",
    "FrameTransform",
    "SalovaProcessor",
    "SalovaProcessorKwargs",
    "SalovaVideoProcessor",
    "SalovaVideoProcessorKwargs",
    "SceneCutDetector",
    "Segment",
    "SegmentationPolicy",
    "decode_video",
    "format_timestamp",
    "plan_segments",
    "scene_tiling_boundaries",
    "tower_video_settings",
]

# save_pretrained copies each class's file and its relative imports next to the processor files, and writes
# `auto_map` entries for AutoProcessor and AutoVideoProcessor.
SalovaProcessor.register_for_auto_class("AutoProcessor")
SalovaVideoProcessor.register_for_auto_class("AutoVideoProcessor")

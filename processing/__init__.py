"""Turning videos and questions into SALOVA inputs: one-pass decoding with scene cuts, segments, prompts."""

from .frame_preprocessing import TOWER_PRESETS, FrameTransform, normalize_frames
from .processing_salova import SalovaProcessor, format_timestamp
from .scene_detection import SceneCutDetector
from .segmentation import SEGMENTERS, Segment, SegmentationPolicy, plan_segments, scene_tiling_boundaries
from .video_decoding import DecodedVideo, decode_video

__all__ = [
    "SEGMENTERS",
    "TOWER_PRESETS",
    "DecodedVideo",
    "FrameTransform",
    "SalovaProcessor",
    "SceneCutDetector",
    "Segment",
    "SegmentationPolicy",
    "decode_video",
    "format_timestamp",
    "normalize_frames",
    "plan_segments",
    "scene_tiling_boundaries",
]

# save_pretrained copies processing_salova.py and its relative imports next to the processor files.
SalovaProcessor.register_for_auto_class("AutoProcessor")

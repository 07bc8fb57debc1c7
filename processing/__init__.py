"""Turning videos and questions into SALOVA inputs: decoding, frame sampling and preprocessing."""

from .frame_preprocessing import preprocess_frames
from .video_decoding import SampledFrames, sample_frames

__all__ = ["SampledFrames", "preprocess_frames", "sample_frames"]

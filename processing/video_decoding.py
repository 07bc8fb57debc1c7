"""Frame sampling from video files with PyAV (no torchvision)."""

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class SampledFrames:
    """frames: `(T, H, W, 3)` uint8 RGB; timestamps: `(T,)` seconds of each frame; duration: seconds."""

    frames: np.ndarray
    timestamps: np.ndarray
    duration: float


def sample_frames(path: str | Path, fps: float = 1.0) -> SampledFrames:
    """Decodes `path` once and keeps the first frame of each `1 / fps`-second bin."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Video file not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"{path} could not be opened as a video: {error}") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, timestamps, next_time, last_time = [], [], 0.0, 0.0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            time = float(frame.pts * stream.time_base)
            last_time = time
            if time + 1e-6 >= next_time:
                frames.append(frame.to_ndarray(format="rgb24"))
                timestamps.append(time)
                next_time = (math.floor(time * fps + 1e-6) + 1) / fps
    if not frames:
        raise ValueError(f"{path} has a video stream but no decodable frame.")
    return SampledFrames(np.stack(frames), np.asarray(timestamps), last_time + 1.0 / float(stream.average_rate or fps))

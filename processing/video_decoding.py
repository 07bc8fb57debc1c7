"""One decode pass per video with PyAV: scene cuts from every frame and the 1 FPS frames, together.

A video can be a path, a binary file-like object, frames already in memory (a `(T, H, W, 3)` array or a list of
PIL images, with their frame rate), or a single image (`(H, W, 3)` array or PIL image), which is a one-frame,
one-segment video. Frame times come from presentation timestamps, so variable-frame-rate files sample
correctly; display rotation is applied; frames are resized to the tower size inside the loop, so memory stays
flat whatever the video's length.
"""

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .frame_preprocessing import FrameTransform
from .scene_detection import DetectionThread, SceneCutDetector

VideoInput = str | os.PathLike | BinaryIO | np.ndarray | Image.Image | Sequence[Image.Image]

# 8K UHD is 33 Mpx; anything far above is a mistake or a crafted header, and one frame of it is gigabytes.
DEFAULT_MAX_FRAME_PIXELS = 64 * 1024 * 1024
# Share of a file's declared frames that may be missing (dropped leading B-frames) before it counts as damaged.
MISSING_FRAMES_TOLERANCE = 0.01
# Decoding shows a progress bar from this many frames on (about 10 minutes at 25 FPS).
PROGRESS_MIN_FRAMES = 15_000


@dataclass
class DecodedVideo:
    """The product of one decode pass.

    frames: `(T, size, size, 3)` uint8 RGB, the sampled frames resized for the vision tower.
    timestamps: `(T,)` seconds of each sampled frame from the video's first frame.
    duration: seconds covered by the video (last frame's time plus its duration).
    cut_times: starts of the detected scenes after the first, in seconds (empty when detection was off).
    """

    name: str
    frames: np.ndarray
    timestamps: np.ndarray
    duration: float
    frame_rate: float
    num_decoded_frames: int
    cut_times: list[float] = field(default_factory=list)
    is_image: bool = False


def describe_source(source: VideoInput) -> str:
    """A name for messages: the path, the file object's name, or what the in-memory input is."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"<array of shape {tuple(source.shape)}>"
    if isinstance(source, Image.Image):
        return f"<{source.width}x{source.height} image>"
    if isinstance(source, Sequence):
        return f"<list of {len(source)} images>"
    return str(getattr(source, "name", f"<{type(source).__name__}>"))


def decode_video(
    source: VideoInput,
    frame_transform: FrameTransform,
    sampling_fps: float = 1.0,
    cut_detector: SceneCutDetector | None = None,
    video_fps: float | None = None,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    progress: bool | None = None,
) -> DecodedVideo:
    """Decodes `source` once: feeds every frame to `cut_detector` and keeps the first frame of each
    `1 / sampling_fps` seconds, resized by `frame_transform`.

    `video_fps` is the frame rate of in-memory frames (ignored for files). `progress=None` shows a bar for long
    videos only. Raises `FileNotFoundError` or `ValueError` naming the input and what is wrong with it.
    """
    if sampling_fps <= 0:
        raise ValueError(f"sampling_fps must be positive, got {sampling_fps}.")
    name = describe_source(source)
    if _is_image(source):
        frame = av.VideoFrame.from_ndarray(_rgb_array(source, name), format="rgb24")
        _check_frame_size(name, frame.width, frame.height, max_frame_pixels)
        return DecodedVideo(name, frame_transform(frame)[None], np.zeros(1), 1.0 / sampling_fps, 0.0, 1, is_image=True)
    with _open_frames(source, name, video_fps) as frames:
        _check_frame_size(name, frames.width, frames.height, max_frame_pixels)
        return _decode_pass(frames, frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress)


def _decode_pass(frames, frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress) -> DecodedVideo:
    show_progress = progress if progress is not None else (frames.expected_frames or 0) >= PROGRESS_MIN_FRAMES
    bar = tqdm(total=frames.expected_frames, unit="frame", desc=f"decoding {frames.name}", disable=not show_progress)
    sampled, timestamps = [], []
    next_sample_time, last_time, count, reported = 0.0, 0.0, 0, 0
    with DetectionThread(cut_detector) if cut_detector is not None else nullcontext() as detection:
        for frame, seconds, timecode in frames:
            if count == 0:
                _check_frame_size(frames.name, frame.width, frame.height, max_frame_pixels)
            count += 1
            last_time = seconds
            if detection is not None:
                detection.submit(frame, timecode)
            # Keep the first frame at or after each sampling instant k / fps (tolerant to timestamp rounding).
            if seconds + 1e-6 >= next_sample_time:
                sampled.append(frame_transform(frame, frame.rotation if frames.from_file else 0))
                timestamps.append(seconds)
                next_sample_time = (math.floor(seconds * sampling_fps + 1e-6) + 1) / sampling_fps
                bar.update(count - reported)
                reported = count
    bar.update(count - reported)
    bar.close()
    if count == 0:
        raise ValueError(f"{frames.name}: the video stream holds no decodable frame.")
    # A threaded decoder can stop at damaged data without raising; the container's index tells.
    if frames.expected_frames and count < frames.expected_frames * (1 - MISSING_FRAMES_TOLERANCE) - 1:
        raise ValueError(
            f"{frames.name}: decoding stopped after {count} of the {frames.expected_frames} frames the file "
            f"declares (at {last_time:.2f} s); the file is truncated or corrupt."
        )
    return DecodedVideo(
        name=frames.name,
        frames=np.stack(sampled),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        duration=last_time + 1.0 / float(frames.frame_rate),
        frame_rate=float(frames.frame_rate),
        num_decoded_frames=count,
        cut_times=cut_detector.finish() if cut_detector is not None else [],
    )


class _FileFrames:
    """Frames of a video file, in presentation order, with times from the first frame."""

    from_file = True

    def __init__(self, source, name: str):
        self.name = name
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise FileNotFoundError(f"Video file not found: {name}")
        try:
            self._container = av.open(source if not isinstance(source, os.PathLike) else os.fspath(source))
        except (av.error.FFmpegError, UnicodeDecodeError) as error:
            raise ValueError(f"{name}: not a readable video file ({error}).") from error
        if not self._container.streams.video:
            kinds = sorted({stream.type for stream in self._container.streams}) or ["none"]
            self._container.close()
            raise ValueError(f"{name}: has no video stream (streams found: {', '.join(kinds)}).")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        context = self._stream.codec_context
        self.width, self.height = context.width, context.height
        self.frame_rate = Fraction(self._stream.average_rate or self._stream.guessed_rate or 25)
        self.expected_frames = self._stream.frames or None

    def __iter__(self) -> Iterator[tuple[av.VideoFrame, float, object]]:
        first_pts, index, seconds = None, 0, 0.0
        try:
            for frame in self._container.decode(self._stream):
                if frame.pts is None:
                    seconds = index / float(self.frame_rate)
                    timecode = SceneCutDetector.timecode(index, None, None, self.frame_rate)
                else:
                    first_pts = frame.pts if first_pts is None else first_pts
                    time_base = Fraction(frame.time_base)
                    seconds = float((frame.pts - first_pts) * time_base)
                    timecode = SceneCutDetector.timecode(index, frame.pts - first_pts, time_base, self.frame_rate)
                yield frame, seconds, timecode
                index += 1
        except av.error.FFmpegError as error:
            raise ValueError(
                f"{self.name}: decoding failed after {index} frames (at {seconds:.2f} s); the file is truncated "
                f"or corrupt ({error})."
            ) from error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._container.close()


class _MemoryFrames:
    """Frames already decoded (an array or PIL images) at a known frame rate."""

    from_file = False

    def __init__(self, source, name: str, video_fps: float | None):
        self.name = name
        if video_fps is None or video_fps <= 0:
            raise ValueError(f"{name}: frames in memory need their frame rate: pass video_fps=<frames per second>.")
        if len(source) == 0:
            raise ValueError(f"{name}: the video holds no frame.")
        self._frames = source
        self.frame_rate = Fraction(video_fps).limit_denominator(1001)
        self.expected_frames = len(source)
        self.height, self.width = _rgb_array(source[0], name).shape[:2]

    def __iter__(self):
        for index, pixels in enumerate(self._frames):
            frame = av.VideoFrame.from_ndarray(_rgb_array(pixels, self.name), format="rgb24")
            yield frame, index / float(self.frame_rate), SceneCutDetector.timecode(index, None, None, self.frame_rate)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def _open_frames(source, name: str, video_fps: float | None):
    if isinstance(source, (np.ndarray, list, tuple)):
        return _MemoryFrames(source, name, video_fps)
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        return _FileFrames(source, name)
    raise ValueError(
        f"Unsupported video input {name}: pass a path, a binary file object, a (T, H, W, 3) uint8 array or a list "
        "of PIL images (with video_fps), or one image."
    )


def _is_image(source) -> bool:
    return isinstance(source, Image.Image) or (isinstance(source, np.ndarray) and source.ndim == 3)


def _rgb_array(pixels, name: str) -> np.ndarray:
    if isinstance(pixels, Image.Image):
        return np.asarray(pixels.convert("RGB"))
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(
            f"{name}: frames must be (H, W, 3) uint8 RGB, got shape {tuple(pixels.shape)} of {pixels.dtype}."
        )
    return np.ascontiguousarray(pixels)


def _check_frame_size(name: str, width: int, height: int, max_frame_pixels: int) -> None:
    if width * height > max_frame_pixels:
        raise ValueError(
            f"{name}: frames are {width}x{height} = {width * height} pixels, over max_frame_pixels="
            f"{max_frame_pixels}; raise the limit if this resolution is intended."
        )

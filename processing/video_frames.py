"""The frame source: a video's frames in presentation order, each with its time and its place for the detector.

A video is a path, a binary file-like object, or frames already in memory (a `(T, H, W, 3)` array or a list of PIL
images, with their frame rate). Frame times come from presentation timestamps, so variable-frame-rate files sample
correctly, and count from the first frame shown: that of a file cut without re-encoding too, whose edit list starts
the stream within a group of pictures. Decoding errors, and a decode that stops well short of the frames the file
declares, are reported naming the video.
"""

import math
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, NamedTuple

import av
import numpy as np
from PIL import Image

from .scene_detection import FrameStamp

VideoInput = str | os.PathLike | BinaryIO | np.ndarray | Image.Image | Sequence[Image.Image]

# 8K UHD is 33 Mpx; anything far above is a mistake or a crafted header, and one frame of it is gigabytes.
DEFAULT_MAX_FRAME_PIXELS = 64 * 1024 * 1024
# Share of a file's declared frames that may be missing (dropped leading B-frames) before it counts as damaged.
MISSING_FRAMES_TOLERANCE = 0.01


class TimedFrame(NamedTuple):
    """A decoded frame, its time in seconds from the video's first frame, and its place for the detector."""

    frame: av.VideoFrame
    seconds: float
    stamp: FrameStamp


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


def is_image(source) -> bool:
    return isinstance(source, Image.Image) or (isinstance(source, np.ndarray) and source.ndim == 3)


def rgb_array(pixels, name: str) -> np.ndarray:
    """`pixels` (a PIL image or an array) as a contiguous `(H, W, 3)` uint8 RGB array."""
    if isinstance(pixels, Image.Image):
        return np.asarray(pixels.convert("RGB"))
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(
            f"{name}: frames must be (H, W, 3) uint8 RGB, got shape {tuple(pixels.shape)} of {pixels.dtype}."
        )
    return np.ascontiguousarray(pixels)


def check_frame_size(name: str, width: int, height: int, max_frame_pixels: int) -> None:
    if width * height > max_frame_pixels:
        raise ValueError(
            f"{name}: frames are {width}x{height} = {width * height} pixels, over max_frame_pixels="
            f"{max_frame_pixels}; raise the limit if this resolution is intended."
        )


def is_truncated(count: int, expected_frames: int | None) -> bool:
    """Whether `count` frames are far fewer than the `expected_frames` a file declares (a threaded decoder can stop
    at damaged data without raising; the container's index tells)."""
    return bool(expected_frames) and count < expected_frames * (1 - MISSING_FRAMES_TOLERANCE) - 1


def presented_frames(stream: av.video.stream.VideoStream) -> int | None:
    """The frames `stream` presents, as far as the container tells: its sample count, or fewer where its duration
    holds fewer (an edit list presents only part of the samples, as in a file cut without re-encoding, whose first
    group of pictures starts before the cut)."""
    declared = stream.frames or None
    if declared is None or not stream.duration:
        return declared
    return min(declared, math.ceil(stream.duration * Fraction(stream.time_base) * stream_frame_rate(stream)))


def stream_frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    return Fraction(stream.average_rate or stream.guessed_rate or 25)


def pts_seconds(pts: int, time_base: Fraction) -> float:
    """`pts` ticks of `time_base` in seconds: integer true division rounds once, as `float(pts * time_base)` does,
    without a `Fraction` per frame."""
    return pts * time_base.numerator / time_base.denominator


def time_origin(stream: av.video.stream.VideoStream, first_frame: av.VideoFrame) -> int:
    """The pts times count from, given the first frame a decode returned: that frame's, unless it is no key frame
    and the container starts the stream earlier (an edit list starting within a group of pictures can start the
    stream at a B-frame)."""
    start = stream.start_time
    if first_frame.key_frame or start is None:
        return first_frame.pts
    return min(start, first_frame.pts)


class FileFrames:
    """The frames of a video file: every frame (`frames`), or those of a part between two key frames (`part_frames`).

    `threads`: decoder threads (`None`: as many as FFmpeg picks for the cores).
    """

    def __init__(self, source, name: str, threads: int | None = None):
        self.name = name
        self.source = _checked_file_source(source, name)
        try:
            self._container = av.open(self.source)
        except (av.error.FFmpegError, UnicodeDecodeError) as error:
            raise ValueError(f"{name}: not a readable video file ({error}).") from error
        if not self._container.streams.video:
            kinds = sorted({stream.type for stream in self._container.streams}) or ["none"]
            self._container.close()
            raise ValueError(f"{name}: has no video stream (streams found: {', '.join(kinds)}).")
        self.stream = self._container.streams.video[0]
        self.stream.thread_type = "AUTO"
        if threads is not None:
            self.stream.codec_context.thread_count = threads
        # The stream's time base as an exact fraction, the one all times here use (decoded frames carry it too).
        self.time_base = Fraction(self.stream.time_base)
        self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height
        self.frame_rate = stream_frame_rate(self.stream)
        self.expected_frames = presented_frames(self.stream)

    def reopened(self, threads: int) -> "FileFrames":
        """The same file on a decoder of its own running `threads` threads, for a part decoded side by side."""
        return FileFrames(self.source, self.name, threads)

    def frames(self) -> Iterator[TimedFrame]:
        """Every frame, its time counted from the first frame decoded (see `time_origin`)."""
        return self._timed(self._container.decode(self.stream), origin=None)

    def part_frames(self, start_pts: int | None, stop_pts: int | None, origin: int) -> Iterator[TimedFrame]:
        """Every frame from the key frame at `start_pts` through the key frame at `stop_pts` (`None`: the stream's
        start, its end), its time counted from `origin`. Ends without a frame when the container cannot seek to
        `start_pts` (see `_packets_from`)."""
        return self._timed(self._decoded_part(start_pts, stop_pts), origin)

    def _decoded_part(self, start_pts: int | None, stop_pts: int | None) -> Iterator[av.VideoFrame]:
        for packet in self._packets_from(start_pts):
            yield from packet.decode()
            if stop_pts is not None and packet.pts == stop_pts:
                # The frames still in the decoder: none after `stop`, as no later packet was sent.
                yield from self._drain_decoder()
                return

    def _packets_from(self, start_pts: int | None) -> Iterator[av.Packet]:
        """The stream's packets in decoding order from the key frame at `start_pts` (`None`: from the stream's
        start). A seek may land on an earlier key frame (containers index them by decoding time); the packets
        before `start_pts` are then skipped, as they are all presented before it. No packet when the packets pass
        `start_pts` without it (the seek landed after it)."""
        if start_pts is not None:
            self._container.seek(start_pts, stream=self.stream, backward=True)
        packets = self._container.demux(self.stream)
        if start_pts is not None:
            for packet in packets:
                if packet.pts == start_pts:
                    yield packet
                    break
                if packet.pts is not None and packet.pts > start_pts:
                    return
            else:
                return
        yield from packets

    def _timed(self, frames: Iterator[av.VideoFrame], origin: int | None) -> Iterator[TimedFrame]:
        """`frames` with their times counted from `origin` (`None`: from the first frame, see `time_origin`);
        a decoding error is reported naming the file and how far it got."""
        time_base, count = self.time_base, 0
        try:
            for frame in frames:
                if frame.pts is None:
                    seconds = count / float(self.frame_rate)
                    yield TimedFrame(frame, seconds, FrameStamp(seconds, count, self.frame_rate))
                else:
                    origin = time_origin(self.stream, frame) if origin is None else origin
                    pts = frame.pts - origin
                    seconds = pts_seconds(pts, time_base)
                    yield TimedFrame(frame, seconds, FrameStamp(seconds, count, self.frame_rate, pts, time_base))
                count += 1
        except av.error.FFmpegError as error:
            raise ValueError(
                f"{self.name}: decoding failed after {count} frames; the file is truncated or corrupt ({error})."
            ) from error

    def _drain_decoder(self) -> list[av.VideoFrame]:
        """The frames the decoder still holds, once its threads are done with every packet sent.

        A decoding loop that stops early drains the decoder before anything flushes it (a seek does) or frees it:
        a decoder thread may still be reporting an error through FFmpeg's log, whose Python callback needs the
        GIL, and flushing or freeing waits for the threads while holding the GIL.
        """
        try:
            frames = self.stream.codec_context.decode(None)
        except av.error.EOFError:  # already drained
            return []
        for frame in frames:
            frame.time_base = self.time_base
        return frames

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._drain_decoder()
        self._container.close()


class MemoryFrames:
    """Frames already decoded (an array or PIL images) at a known frame rate."""

    def __init__(self, source, name: str, video_fps: float | None):
        self.name = name
        if video_fps is None or video_fps <= 0:
            raise ValueError(f"{name}: frames in memory need their frame rate: pass video_fps=<frames per second>.")
        if len(source) == 0:
            raise ValueError(f"{name}: the video holds no frame.")
        self._frames = source
        self.frame_rate = Fraction(video_fps).limit_denominator(1001)
        self.expected_frames = len(source)
        self.height, self.width = rgb_array(source[0], name).shape[:2]

    def frames(self) -> Iterator[TimedFrame]:
        for index, pixels in enumerate(self._frames):
            frame = av.VideoFrame.from_ndarray(rgb_array(pixels, self.name), format="rgb24")
            seconds = index / float(self.frame_rate)
            yield TimedFrame(frame, seconds, FrameStamp(seconds, index, self.frame_rate))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def open_frames(source, name: str, video_fps: float | None) -> FileFrames | MemoryFrames:
    """The frame source of a file (path or file object) or of frames in memory."""
    if isinstance(source, (np.ndarray, list, tuple)):
        return MemoryFrames(source, name, video_fps)
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        return FileFrames(source, name)
    raise ValueError(
        f"Unsupported video input {name}: pass a path, a binary file object, a (T, H, W, 3) uint8 array or a list "
        "of PIL images (with video_fps), or one image."
    )


def _checked_file_source(source, name: str):
    """A path as a string, or a file object rewound to its start; clear errors for what cannot be opened."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if "://" in str(path):
            raise ValueError(
                f"{name}: URLs are not supported; download the video and pass the local file (or a file object)."
            )
        if Path(path).is_dir():
            raise IsADirectoryError(f"{name} is a directory, not a video file; pass one video file inside it.")
        if not Path(path).is_file():
            raise FileNotFoundError(f"Video file not found: {name}")
        return path
    # A file object already read (by an earlier call, say) would otherwise look empty: decode it from its start.
    if getattr(source, "seekable", lambda: False)():
        source.seek(0)
    elif getattr(source, "closed", False):
        raise ValueError(f"{name}: the file object is closed.")
    return source

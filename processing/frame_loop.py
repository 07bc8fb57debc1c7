"""The frame loop every decode runs, over a whole video or over one of its parts: each frame goes to the detector,
the sampler keeps the first frame at or after each `1 / fps` instant, and the kept frames are resized for the tower
inside the loop, so memory stays flat whatever the video's length.
"""

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from tqdm.auto import tqdm

from .frame_preprocessing import FrameTransform, display_thumbnail
from .frame_sampling import FirstFrameSampler
from .scene_detection import FrameStamp
from .video_frames import TimedFrame, check_frame_size


@dataclass(frozen=True)
class Sampling:
    """What the frame loops of a decode keep: the first frame at or after each `1 / fps` seconds, resized by
    `frame_transform` (and as a `display_thumbnail` `thumbnail_height` high, when set), of frames of at most
    `max_frame_pixels`."""

    frame_transform: FrameTransform
    fps: float
    max_frame_pixels: int
    thumbnail_height: int | None = None


@dataclass
class LoopResult:
    """What a frame loop kept: the resized frames `(size, size, 3)` uint8, their thumbnails (see `FrameResizer`)
    and their times in seconds, how many frames it counted and the last one's time."""

    frames: list[np.ndarray]
    thumbnails: list[np.ndarray]
    timestamps: list[float]
    count: int
    last_time: float


class FrameResizer:
    """Applies a `FrameTransform` to the kept frames, and takes their `display_thumbnail` when `thumbnail_height` is
    set, on a worker thread (`threaded`), so that the decoding thread keeps feeding the decoder, or on the calling
    thread (parts side by side, which fill the cores already). At most `max_pending` full-size frames wait. Use as a
    context manager; `results` gives `(frames, thumbnails)` in order.
    """

    def __init__(
        self, frame_transform: FrameTransform, threaded: bool, thumbnail_height: int | None, max_pending: int = 8
    ):
        # Scalers of this loop's own: a scaler is not to be shared between threads.
        self.frame_transform = dataclasses.replace(frame_transform)
        self.thumbnail_height = thumbnail_height
        self._thumbnail_scaler = VideoReformatter()
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-resize") if threaded else None
        self._pending: collections.deque[Future] = collections.deque()
        self._done: list[tuple[np.ndarray, np.ndarray | None]] = []

    def __enter__(self) -> "FrameResizer":
        return self

    def submit(self, frame: av.VideoFrame) -> None:
        if self._executor is None:
            self._done.append(self._resized(frame))
            return
        self._pending.append(self._executor.submit(self._resized, frame))
        while len(self._pending) > self.max_pending:
            self._done.append(self._pending.popleft().result())

    def results(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        while self._pending:
            self._done.append(self._pending.popleft().result())
        frames = [pixels for pixels, _ in self._done]
        thumbnails = [thumbnail for _, thumbnail in self._done if thumbnail is not None]
        return frames, thumbnails

    def _resized(self, frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray | None]:
        pixels = self.frame_transform(frame, frame.rotation)
        if self.thumbnail_height is None:
            return pixels, None
        return pixels, display_thumbnail(frame, self.thumbnail_height, self._thumbnail_scaler)

    def __exit__(self, *exc_info) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def run_frame_loop(
    frames: Iterable[TimedFrame],
    name: str,
    sampling: Sampling,
    detect: Callable[[av.VideoFrame, FrameStamp], None] | None,
    bar: tqdm,
    threaded_resize: bool,
    continues_part: bool = False,
    stop: threading.Event | None = None,
) -> LoopResult:
    """Every frame of `frames` to `detect`, and the frames `sampling` keeps resized (see `FrameResizer`), until
    `frames` ends or `stop` is set.

    `continues_part`: the first frame is the last one of the part before (a key frame both parts decode), which
    counted and sampled it; here it only stands as the frame before the part's own, for `detect` and the sampler.
    The progress `bar` advances by the frames counted, at each kept frame and at the end.
    """
    sampler = FirstFrameSampler(sampling.fps)
    timestamps, count, reported, last_time = [], 0, 0, 0.0
    with FrameResizer(sampling.frame_transform, threaded_resize, sampling.thumbnail_height) as resizer:
        for position, (frame, seconds, stamp) in enumerate(frames):
            if stop is not None and stop.is_set():
                break
            if position == 0:
                check_frame_size(name, frame.width, frame.height, sampling.max_frame_pixels)
            if detect is not None:
                detect(frame, stamp)
            kept = sampler.keeps(seconds)
            if position == 0 and continues_part:
                continue
            count += 1
            last_time = seconds
            if kept:
                resizer.submit(frame)
                timestamps.append(seconds)
                bar.update(count - reported)
                reported = count
        bar.update(count - reported)
        return LoopResult(*resizer.results(), timestamps, count, last_time)

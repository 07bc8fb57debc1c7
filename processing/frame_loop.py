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
from tqdm.auto import tqdm

from .frame_preprocessing import FrameTransform
from .frame_sampling import FirstFrameSampler
from .scene_detection import FrameStamp
from .video_frames import TimedFrame, check_frame_size


@dataclass
class LoopResult:
    """What a frame loop kept: the resized frames `(size, size, 3)` uint8 and their times in seconds, how many
    frames it counted and the last one's time."""

    frames: list[np.ndarray]
    timestamps: list[float]
    count: int
    last_time: float


class FrameResizer:
    """Applies a `FrameTransform` to the kept frames, on a worker thread (`threaded`), so that the decoding thread
    keeps feeding the decoder, or on the calling thread (parts side by side, which fill the cores already). At most
    `max_pending` full-size frames wait. Use as a context manager; `results` gives the frames in order.
    """

    def __init__(self, frame_transform: FrameTransform, threaded: bool, max_pending: int = 8):
        # One scaler per loop: a `FrameTransform` is not to be shared between threads.
        self.frame_transform = dataclasses.replace(frame_transform)
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-resize") if threaded else None
        self._pending: collections.deque[Future] = collections.deque()
        self._done: list[np.ndarray] = []

    def __enter__(self) -> "FrameResizer":
        return self

    def submit(self, frame: av.VideoFrame) -> None:
        if self._executor is None:
            self._done.append(self.frame_transform(frame, frame.rotation))
            return
        self._pending.append(self._executor.submit(self.frame_transform, frame, frame.rotation))
        while len(self._pending) > self.max_pending:
            self._done.append(self._pending.popleft().result())

    def results(self) -> list[np.ndarray]:
        while self._pending:
            self._done.append(self._pending.popleft().result())
        return self._done

    def __exit__(self, *exc_info) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def run_frame_loop(
    frames: Iterable[TimedFrame],
    name: str,
    sampler: FirstFrameSampler,
    resizer: FrameResizer,
    detect: Callable[[av.VideoFrame, FrameStamp], None] | None,
    max_frame_pixels: int,
    bar: tqdm,
    continues_part: bool = False,
    stop: threading.Event | None = None,
) -> LoopResult:
    """Every frame of `frames` to `detect`, and the frames `sampler` keeps to `resizer`, until `frames` ends or
    `stop` is set.

    `continues_part`: the first frame is the last one of the part before (a key frame both parts decode), which
    counted and sampled it; here it only stands as the frame before the part's own, for `detect` and `sampler`.
    The progress `bar` advances by the frames counted, at each kept frame and at the end.
    """
    timestamps, count, reported, last_time = [], 0, 0, 0.0
    for position, (frame, seconds, stamp) in enumerate(frames):
        if stop is not None and stop.is_set():
            break
        if position == 0:
            check_frame_size(name, frame.width, frame.height, max_frame_pixels)
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
    return LoopResult(resizer.results(), timestamps, count, last_time)

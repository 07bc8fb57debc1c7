"""Scene cuts with PySceneDetect's `AdaptiveDetector`, fed from our own decode loop.

The detector sees every decoded frame, downscaled the way `scenedetect.SceneManager` does (to about 256
pixels on the long side), so the cuts agree with `scenedetect.detect(path, AdaptiveDetector())` while the
same decode pass also yields the 1 FPS frames for the model. For planar YUV 4:2:0 (nearly every video file)
the downscale works on the planes before colour conversion, by nearest-neighbour sampling, which costs a
fraction of scaling to BGR first; the tests check that the cuts still agree with PySceneDetect's within a frame.

A frame's content score (`ContentDetector`'s mean HSV difference to the previous frame) is computed here with
one `absdiff` and one per-channel sum on the interleaved HSV image, which gives the very value PySceneDetect
computes channel by channel. The `AdaptiveDetector`'s rolling-ratio rule and `min_scene_len` then run on those
scores as `AdaptiveRatioRule` and `SceneLengthGate`: the same arithmetic, without building a `FrameTimecode` (and
its exact fractions) for every frame, only for the frames that meet the threshold; the tests feed both the same
scores.
"""

import collections
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from scenedetect import ContentDetector, FrameTimecode
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

_PLANAR_420 = ("yuv420p", "yuvj420p")
# OpenCV converts I420 rows whose width is a multiple of this several times faster; narrower detection images are
# padded to it and cropped after the conversion.
_CONVERSION_ROW_ALIGNMENT = 64
# ContentDetector's default weights; edges weigh nothing, so they are not computed.
_HUE_WEIGHT, _SATURATION_WEIGHT, _LUMA_WEIGHT, _ = ContentDetector.DEFAULT_COMPONENT_WEIGHTS
_WEIGHT_TOTAL = sum(abs(weight) for weight in ContentDetector.DEFAULT_COMPONENT_WEIGHTS)


def content_score(previous_hsv: np.ndarray | None, hsv: np.ndarray) -> float:
    """`ContentDetector`'s frame score (default weights) between two `(h, w, 3)` uint8 HSV images; 0.0 for the
    first frame, as PySceneDetect scores it."""
    if previous_hsv is None:
        return 0.0
    hue, saturation, luma, _ = cv2.sumElems(cv2.absdiff(hsv, previous_hsv))
    num_pixels = float(hsv.shape[0] * hsv.shape[1])
    # ContentDetector's weighted sum term by term in its order, so the float is the same to the last bit (its edge
    # term adds 0.0).
    return (
        hue / num_pixels * _HUE_WEIGHT + saturation / num_pixels * _SATURATION_WEIGHT + luma / num_pixels * _LUMA_WEIGHT
    ) / _WEIGHT_TOTAL


class FrameStamp(NamedTuple):
    """Where a decoded frame lies: `seconds` from the first frame, its index in presentation order and, for files,
    its presentation timestamp from the first frame's (`pts` ticks of `time_base`).

    A plain tuple, cheap to make for every frame; the detector builds PySceneDetect's `FrameTimecode` (see
    `timecode`) only for the few frames whose scene length it has to judge.
    """

    seconds: float
    index: int
    frame_rate: Fraction
    pts: int | None = None
    time_base: Fraction | None = None

    def timecode(self) -> FrameTimecode:
        """PySceneDetect's time of the frame: its presentation time when known, else its index."""
        if self.pts is None or self.time_base is None:
            return FrameTimecode(self.index, fps=self.frame_rate)
        return FrameTimecode(Timecode(pts=self.pts, time_base=self.time_base), fps=self.frame_rate)


class AdaptiveRatioRule:
    """`AdaptiveDetector`'s threshold rule over a stream of content scores, without its per-frame timecodes.

    A frame meets the rule when its score is at least `min_content_val` and at least `adaptive_threshold` times the
    mean score of the `window_width` frames on either side (255 when that mean is zero); so a frame is judged
    `window_width` frames after it arrives. The arithmetic is `AdaptiveDetector.process_frame`'s, term by term, so
    the same scores give the same frames; `min_scene_len` is `SceneLengthGate`'s.
    """

    def __init__(self, adaptive_threshold: float, min_content_val: float, window_width: int):
        self.adaptive_threshold = adaptive_threshold
        self.min_content_val = min_content_val
        self.window_width = window_width
        self._buffer: collections.deque[tuple[FrameStamp, float]] = collections.deque(maxlen=2 * window_width + 1)

    def judge(self, stamp: FrameStamp, score: float) -> FrameStamp | None:
        """Takes the next frame's score; returns the frame `window_width` back when it meets the rule."""
        self._buffer.append((stamp, score))
        if len(self._buffer) < self._buffer.maxlen:
            return None
        target_stamp, target_score = self._buffer[self.window_width]
        average = sum(score for index, (_, score) in enumerate(self._buffer) if index != self.window_width) / (
            2.0 * self.window_width
        )
        if abs(average) >= 0.00001:
            ratio = min(target_score / average, 255.0)
        else:
            ratio = 255.0 if target_score >= self.min_content_val else 0.0
        if ratio >= self.adaptive_threshold and target_score >= self.min_content_val:
            return target_stamp
        return None


class SceneLengthGate:
    """`min_scene_len` frames between cuts, counted from the first frame and then from each admitted cut, with
    PySceneDetect's timecode arithmetic (presentation times for files, so variable frame rates count right)."""

    def __init__(self, first: FrameStamp, min_scene_len: int):
        self.min_scene_len = min_scene_len
        self._last_cut = first.timecode()

    def admit(self, stamp: FrameStamp) -> bool:
        timecode = stamp.timecode()
        if (timecode - self._last_cut) >= self.min_scene_len:
            self._last_cut = timecode
            return True
        return False


class SceneCutDetector:
    """Adaptive content-change cuts (HSV content score, rolling adaptive ratio) over a stream of frames.

    Defaults are PySceneDetect's: `adaptive_threshold=3.0`, `min_content_val=15.0`, `window_width=2`,
    `min_scene_len=15` frames. Call `process` once per decoded frame in order, then `finish`.
    """

    def __init__(
        self,
        adaptive_threshold: float = 3.0,
        min_content_val: float = 15.0,
        min_scene_len: int = 15,
        window_width: int = 2,
    ):
        if window_width < 1:
            raise ValueError(f"window_width must be at least 1, got {window_width}.")
        self.adaptive_threshold = adaptive_threshold
        self.min_content_val = min_content_val
        self.min_scene_len = min_scene_len
        self.window_width = window_width
        self._rule = AdaptiveRatioRule(adaptive_threshold, min_content_val, window_width)
        self._gate: SceneLengthGate | None = None
        self._cuts: list[float] = []
        self._detection_size: tuple[int, int] | None = None
        self._last_hsv: np.ndarray | None = None
        # A frame's own `reformat` reuses one scaler cached on the frame; detection runs on another thread than
        # the 1 FPS resize of the same frame, so it needs a scaler of its own.
        self._reformatter = VideoReformatter()

    def replica(self) -> "SceneCutDetector":
        """A detector with the same settings and nothing seen yet (one per thread: each keeps its own scaler)."""
        return SceneCutDetector(self.adaptive_threshold, self.min_content_val, self.min_scene_len, self.window_width)

    def process(self, frame: av.VideoFrame, stamp: FrameStamp) -> None:
        self.process_score(stamp, self.score(frame))

    def score(self, frame: av.VideoFrame) -> float:
        """The content score of `frame` against the frame scored before it (0.0 for the first)."""
        hsv = self.detection_image(frame)
        score = content_score(self._last_hsv, hsv)
        self._last_hsv = hsv
        return score

    def process_score(self, stamp: FrameStamp, score: float) -> None:
        """The next frame's content score (what `process` computes from the frame)."""
        if self._gate is None:
            self._gate = SceneLengthGate(stamp, self.min_scene_len)
        candidate = self._rule.judge(stamp, score)
        if candidate is not None and self._gate.admit(candidate):
            self._cuts.append(candidate.timecode().seconds)

    def finish(self) -> list[float]:
        """Cut times in seconds (each one the start of a new scene), in order; the last `window_width` frames are
        never judged, as in PySceneDetect."""
        return list(self._cuts)

    def detection_image(self, frame: av.VideoFrame) -> np.ndarray:
        """`frame` downscaled to the detection size, as `(h, w, 3)` uint8 HSV (OpenCV's 8-bit ranges)."""
        return cv2.cvtColor(self._downscaled_bgr(frame), cv2.COLOR_BGR2HSV)

    def _downscaled_bgr(self, frame: av.VideoFrame) -> np.ndarray:
        if self._detection_size is None:
            factor = compute_downscale_factor(max(frame.width, frame.height))
            # Even sizes so that the downscaled planes pack into one I420 image.
            width = max(2, 2 * round(frame.width / factor / 2))
            height = max(2, 2 * round(frame.height / factor / 2))
            self._detection_size = (width, height)
        width, height = self._detection_size
        if frame.format.name not in _PLANAR_420:
            return self._reformatter.reformat(frame, width=width, height=height, format="bgr24").to_ndarray()
        luma, blue_difference, red_difference = _planes_420(frame)
        padded_width = -(-width // _CONVERSION_ROW_ALIGNMENT) * _CONVERSION_ROW_ALIGNMENT
        packed = np.empty((height * 3 // 2, padded_width), dtype=np.uint8)
        cv2.resize(luma, (width, height), dst=packed[:height, :width], interpolation=cv2.INTER_NEAREST)
        # I420 layout: the full-size Y plane, then the quarter-size U and V planes back to back.
        chroma_planes = packed.reshape(-1)[padded_width * height :].reshape(2, height // 2, padded_width // 2)
        for chroma_plane, plane in zip(chroma_planes, (blue_difference, red_difference), strict=True):
            cv2.resize(
                plane, (width // 2, height // 2), dst=chroma_plane[:, : width // 2], interpolation=cv2.INTER_NEAREST
            )
        # Each 2x2 block converts with its own chroma, so the padding columns leave the others as they are.
        return cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420)[:, :width]


class DetectionThread:
    """Runs a detector's per-frame step (`SceneCutDetector.process`) on its own thread, fed through a bounded
    queue, so that detection overlaps decoding (FFmpeg and OpenCV release the GIL). Use as a context manager;
    `submit` each frame's arguments in order.

    An error in the step stops detection but not the drain of the queue (so the decoder never blocks on a full
    queue); it is raised from `submit` or on exit.
    """

    _DONE = object()

    def __init__(self, process: Callable[..., None], queue_size: int = 64):
        self.process = process
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scene-detection", daemon=True)

    def __enter__(self) -> "DetectionThread":
        self._thread.start()
        return self

    def submit(self, *arguments) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(arguments)

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self.process(*item)
                except BaseException as error:  # re-raised on the decoding thread
                    self._error = error


def _planes_420(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, U and V planes of a planar 4:2:0 frame as `(rows, columns)` views, without the line padding."""
    chroma_width, chroma_height = (frame.width + 1) // 2, (frame.height + 1) // 2
    luma, blue_difference, red_difference = frame.planes
    return (
        _plane_view(luma, frame.height, frame.width),
        _plane_view(blue_difference, chroma_height, chroma_width),
        _plane_view(red_difference, chroma_height, chroma_width),
    )


def _plane_view(plane, rows: int, columns: int) -> np.ndarray:
    return np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:rows, :columns]

"""Scene cuts with PySceneDetect's `AdaptiveDetector`, fed from our own decode loop.

The detector sees every decoded frame, downscaled the way `scenedetect.SceneManager` does (to about 256
pixels on the long side), so the cuts agree with `scenedetect.detect(path, AdaptiveDetector())` while the
same decode pass also yields the 1 FPS frames for the model. For planar YUV 4:2:0 (nearly every video file)
the downscale works on the planes before colour conversion, by nearest-neighbour sampling, which costs a
fraction of scaling to BGR first; the tests check that the cuts still agree with PySceneDetect's within a frame.

A frame's content score (`ContentDetector`'s mean HSV difference to the previous frame) is computed here with
one `absdiff` and one per-channel sum on the interleaved HSV image, which gives the very value PySceneDetect
computes channel by channel; the `AdaptiveDetector` then applies its own rolling-ratio rule to those scores.

The fast mode (`SparseCutSearch`) scores only the frames a decoder skipping non-reference frames returns,
flags the gaps between two of them where a cut may lie, and asks for every frame of a short window around each
flag; the cut is then placed with the same scores and the same rule as above, frame by frame.
"""

import queue
import threading
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

_PLANAR_420 = ("yuv420p", "yuvj420p")
_WEIGHTS = ContentDetector.DEFAULT_COMPONENT_WEIGHTS


def content_score(previous_hsv: np.ndarray | None, hsv: np.ndarray) -> float:
    """`ContentDetector`'s frame score (default weights) between two `(h, w, 3)` uint8 HSV images; 0.0 for the
    first frame, as PySceneDetect scores it."""
    if previous_hsv is None:
        return 0.0
    sums = cv2.sumElems(cv2.absdiff(hsv, previous_hsv))
    num_pixels = float(hsv.shape[0] * hsv.shape[1])
    components = ContentDetector.Components(sums[0] / num_pixels, sums[1] / num_pixels, sums[2] / num_pixels, 0.0)
    # Same expression and order as ContentDetector, so the float is the same to the last bit.
    return sum(component * weight for component, weight in zip(components, _WEIGHTS, strict=True)) / sum(
        abs(weight) for weight in _WEIGHTS
    )


class _ScoreFedAdaptiveDetector(AdaptiveDetector):
    """`AdaptiveDetector` whose "frames" are content scores computed by `content_score`."""

    def _calculate_frame_score(self, timecode: FrameTimecode, score: float) -> float:
        return score


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
        self.adaptive_threshold = adaptive_threshold
        self.min_content_val = min_content_val
        self.min_scene_len = min_scene_len
        self.window_width = window_width
        self._detector = self._adaptive_detector(min_scene_len)
        self._cuts: list[FrameTimecode] = []
        self._detection_size: tuple[int, int] | None = None
        self._last_hsv: np.ndarray | None = None
        self._last_timecode: FrameTimecode | None = None
        # A frame's own `reformat` reuses one scaler cached on the frame; detection runs on another thread than
        # the 1 FPS resize of the same frame, so it needs a scaler of its own.
        self._reformatter = VideoReformatter()

    def _adaptive_detector(self, min_scene_len: int) -> _ScoreFedAdaptiveDetector:
        return _ScoreFedAdaptiveDetector(
            adaptive_threshold=self.adaptive_threshold,
            min_scene_len=min_scene_len,
            window_width=self.window_width,
            min_content_val=self.min_content_val,
        )

    @staticmethod
    def timecode(index: int, pts: int | None, time_base: Fraction | None, frame_rate: Fraction) -> FrameTimecode:
        """The detector's time of a frame: its presentation time (from the first frame's) when known."""
        if pts is None or time_base is None:
            return FrameTimecode(index, fps=frame_rate)
        return FrameTimecode(Timecode(pts=pts, time_base=time_base), fps=frame_rate)

    def process(self, frame: av.VideoFrame, timecode: FrameTimecode) -> None:
        hsv = self.detection_image(frame)
        self._cuts += self._detector.process_frame(timecode, content_score(self._last_hsv, hsv))
        self._last_hsv = hsv
        self._last_timecode = timecode

    def finish(self) -> list[float]:
        """Cut times in seconds (each one the start of a new scene), in order."""
        if self._last_timecode is not None:
            self._cuts += self._detector.post_process(self._last_timecode)
        return [cut.seconds for cut in self._cuts]

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
        packed = np.empty((height * 3 // 2, width), dtype=np.uint8)
        packed[:height] = cv2.resize(_plane(frame, 0), (width, height), interpolation=cv2.INTER_NEAREST)
        # I420 layout: the full-size Y plane, then the quarter-size U and V planes back to back.
        chroma_planes = packed.reshape(-1)[width * height :].reshape(2, height // 2, width // 2)
        for index in (1, 2):
            chroma_planes[index - 1] = cv2.resize(
                _plane(frame, index), (width // 2, height // 2), interpolation=cv2.INTER_NEAREST
            )
        return cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420)


class SparseCutSearch:
    """The fast mode of a `SceneCutDetector`: candidate cuts from sparse frames, placed exactly on full windows.

    1. `process` scores each frame of a decode that skips the non-reference frames against the frame decoded
       before it. A gap between two decoded frames is a candidate when its score passes `candidate_fraction` of
       the detector's `min_content_val` and its ratio to the neighbouring gaps' scores passes that fraction of
       `adaptive_threshold` (the gaps span several frames of motion, so their ratios run lower than adjacent
       frames' do).
    2. `windows` gives, for each candidate, the span of frames whose scores the adaptive rule needs to judge
       every frame of the gap: `window_width` frames on either side and one more before (its first score).
    3. `add_window` takes every frame of such a span; `finish` applies the adaptive rule to their exact scores and
       then `min_scene_len` across all windows in time order, as the detector does in one pass.
    """

    def __init__(self, detector: SceneCutDetector, candidate_fraction: float = 0.5):
        self.detector = detector
        self.candidate_fraction = candidate_fraction
        self._times: list[float] = []
        self._scores: list[float] = []
        self._last_hsv: np.ndarray | None = None
        self._first_timecode: FrameTimecode | None = None
        self._threshold_met: list[FrameTimecode] = []
        self._kept: list[tuple[FrameTimecode, np.ndarray]] = []

    def key_frame_span(self, frame_duration: float) -> tuple[float, float]:
        """`(before, after)` seconds around a key frame that hold the window of a cut placed on it."""
        return (self.detector.window_width + 3) * frame_duration, (self.detector.window_width + 2) * frame_duration

    def process(self, frame: av.VideoFrame, timecode: FrameTimecode, keep_image: bool = False) -> None:
        """Scores the next decoded frame; `keep_image` keeps its detection image for `judge_kept_window` (frames
        that were decoded in full runs, around key frames)."""
        hsv = self.detector.detection_image(frame)
        if self._first_timecode is None:
            self._first_timecode = timecode
        self._scores.append(content_score(self._last_hsv, hsv))
        self._times.append(timecode.seconds)
        self._last_hsv = hsv
        if keep_image:
            self._kept.append((timecode, hsv))

    def windows(self, frame_duration: float) -> list[tuple[float, float]]:
        """`(start, end)` seconds, merged where they overlap, of the frames to decode around each candidate."""
        width = self.detector.window_width
        scores = np.asarray(self._scores)
        spans = []
        for index in range(1, len(scores)):
            neighbours = np.r_[scores[max(1, index - width) : index], scores[index + 1 : index + 1 + width]]
            average = neighbours.mean() if len(neighbours) else 0.0
            fraction = self.candidate_fraction
            content_met = scores[index] >= fraction * self.detector.min_content_val
            ratio_met = average < 1e-5 or scores[index] >= fraction * self.detector.adaptive_threshold * average
            if content_met and ratio_met:
                start = self._times[index - 1] - (width + 1.5) * frame_duration
                end = self._times[index] + (width + 0.5) * frame_duration
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((start, end))
        return spans

    def judge_kept_window(self, start: float, end: float) -> bool:
        """Judges the window from kept images when they cover it without a gap; returns whether they did."""
        inside = [(timecode, hsv) for timecode, hsv in self._kept if start <= timecode.seconds <= end]
        times = [timecode.seconds for timecode, _ in inside]
        frame_duration = 1.0 / float(self._first_timecode.frame_rate)
        covered = (
            len(inside) > 0
            and times[0] - start < frame_duration
            and end - times[-1] < frame_duration
            and all(later - earlier < 1.5 * frame_duration for earlier, later in zip(times, times[1:], strict=False))
        )
        if covered:
            self._judge(inside)
        return covered

    def add_window(self, frames: list[tuple[av.VideoFrame, FrameTimecode]]) -> None:
        """Every decoded frame of one window, in order: records the frames that meet the adaptive rule."""
        self._judge([(timecode, self.detector.detection_image(frame)) for frame, timecode in frames])

    def _judge(self, images: list[tuple[FrameTimecode, np.ndarray]]) -> None:
        detector = self.detector._adaptive_detector(min_scene_len=0)
        for (_, previous), (timecode, hsv) in zip(images, images[1:], strict=False):
            # The window's first frame only serves as the second one's predecessor.
            self._threshold_met += detector.process_frame(timecode, content_score(previous, hsv))

    def finish(self) -> list[float]:
        """Cut times in seconds, with `min_scene_len` counted from the first frame and from each kept cut."""
        cuts, last_cut = [], self._first_timecode
        met = {timecode.seconds: timecode for timecode in self._threshold_met}  # overlapping windows repeat some
        for _, timecode in sorted(met.items()):
            if (timecode - last_cut) >= self.detector.min_scene_len:
                cuts.append(timecode)
                last_cut = timecode
        return [cut.seconds for cut in cuts]


class DetectionThread:
    """Runs a `SceneCutDetector` on its own thread, fed through a bounded queue, so that detection overlaps
    decoding (FFmpeg and OpenCV release the GIL). Use as a context manager; `submit` frames in order.

    A detector error stops detection but not the drain of the queue (so the decoder never blocks on a full
    queue); it is raised from `submit` or on exit.
    """

    _DONE = object()

    def __init__(self, detector: SceneCutDetector, queue_size: int = 64):
        self.detector = detector
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scene-detection", daemon=True)

    def __enter__(self) -> "DetectionThread":
        self._thread.start()
        return self

    def submit(self, frame: av.VideoFrame, timecode: FrameTimecode) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((frame, timecode))

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self.detector.process(*item)
                except BaseException as error:  # re-raised on the decoding thread
                    self._error = error


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """One plane of a planar 4:2:0 frame as a `(rows, columns)` view, without the line padding."""
    plane = frame.planes[index]
    columns = frame.width if index == 0 else (frame.width + 1) // 2
    rows = frame.height if index == 0 else (frame.height + 1) // 2
    return np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:rows, :columns]

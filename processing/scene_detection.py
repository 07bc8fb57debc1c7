"""Scene cuts with PySceneDetect's `AdaptiveDetector`, fed from our own decode loop.

The detector sees every decoded frame, downscaled the way `scenedetect.SceneManager` does (to about 256
pixels on the long side), so the cuts agree with `scenedetect.detect(path, AdaptiveDetector())` while the
same decode pass also yields the 1 FPS frames for the model. For planar YUV 4:2:0 (nearly every video file)
the downscale works on the planes before colour conversion, by nearest-neighbour sampling, which costs a
fraction of scaling to BGR first; the tests check that the cuts still agree with PySceneDetect's within a frame.
"""

import queue
import threading
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from scenedetect import AdaptiveDetector, FrameTimecode
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

_PLANAR_420 = ("yuv420p", "yuvj420p")


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
        self._detector = AdaptiveDetector(
            adaptive_threshold=adaptive_threshold,
            min_scene_len=min_scene_len,
            window_width=window_width,
            min_content_val=min_content_val,
        )
        self._cuts: list[FrameTimecode] = []
        self._detection_size: tuple[int, int] | None = None
        self._last_timecode: FrameTimecode | None = None
        # A frame's own `reformat` reuses one scaler cached on the frame; detection runs on another thread than
        # the 1 FPS resize of the same frame, so it needs a scaler of its own.
        self._reformatter = VideoReformatter()

    @staticmethod
    def timecode(index: int, pts: int | None, time_base: Fraction | None, frame_rate: Fraction) -> FrameTimecode:
        """The detector's time of a frame: its presentation time (from the first frame's) when known."""
        if pts is None or time_base is None:
            return FrameTimecode(index, fps=frame_rate)
        return FrameTimecode(Timecode(pts=pts, time_base=time_base), fps=frame_rate)

    def process(self, frame: av.VideoFrame, timecode: FrameTimecode) -> None:
        self._cuts += self._detector.process_frame(timecode, self._downscaled_bgr(frame))
        self._last_timecode = timecode

    def finish(self) -> list[float]:
        """Cut times in seconds (each one the start of a new scene), in order."""
        if self._last_timecode is not None:
            self._cuts += self._detector.post_process(self._last_timecode)
        return [cut.seconds for cut in self._cuts]

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

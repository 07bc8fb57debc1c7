"""One decode pass per video with PyAV: scene cuts from every frame and the sampled frames, together.

A video is a path, a binary file-like object, frames already in memory (a `(T, H, W, 3)` array or a list of PIL
images, with their frame rate), or a single image (`(H, W, 3)` array or PIL image), which is a one-frame,
one-segment video. The frame source (`video_frames`) times the frames; one frame loop (`frame_loop`) feeds them to
the detector, samples them (`frame_sampling`) and resizes the kept ones; a long file runs that loop as parts
decoded side by side (`decode_parts`), with the very result of one pass.
"""

from contextlib import nullcontext
from dataclasses import dataclass, field

import av
import numpy as np
from tqdm.auto import tqdm

from .decode_parts import decode_in_parts, plan_parts
from .frame_loop import FrameResizer, LoopResult, Sampling, run_frame_loop
from .frame_preprocessing import FrameTransform
from .frame_sampling import SAMPLING_FPS
from .scene_detection import DetectionThread, SceneCutDetector
from .video_frames import (
    DEFAULT_MAX_FRAME_PIXELS,
    FileFrames,
    MemoryFrames,
    VideoInput,
    check_frame_size,
    describe_source,
    is_image,
    is_truncated,
    open_frames,
    rgb_array,
)

# Decoding shows a progress bar from this many frames on (about 10 minutes at 25 FPS).
PROGRESS_MIN_FRAMES = 15_000


@dataclass
class DecodedVideo:
    """The product of one decode pass.

    frames: `(T, size, size, 3)` uint8 RGB, the sampled frames resized for the vision tower.
    timestamps: `(T,)` seconds of each sampled frame from the video's first frame.
    duration: seconds covered by the video (last frame's time plus its duration).
    cut_times: starts of the detected scenes after the first, in seconds (empty when detection was off).
    thumbnails: `(T, thumbnail_height, width, 3)` uint8, the sampled frames as displayed (see `display_thumbnail`),
        when asked for.
    """

    name: str
    frames: np.ndarray
    timestamps: np.ndarray
    duration: float
    frame_rate: float
    num_decoded_frames: int
    cut_times: list[float] = field(default_factory=list)
    is_image: bool = False
    thumbnails: np.ndarray | None = None


def decode_video(
    source: VideoInput,
    frame_transform: FrameTransform,
    fps: float = SAMPLING_FPS,
    cut_detector: SceneCutDetector | None = None,
    video_fps: float | None = None,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    progress: bool | None = None,
    thumbnail_height: int | None = None,
) -> DecodedVideo:
    """Decodes `source` once: feeds every frame to `cut_detector` and keeps the first frame at or after each
    `1 / fps` seconds, resized by `frame_transform` (and as a thumbnail `thumbnail_height` high, if given).

    `video_fps` is the frame rate of in-memory frames (ignored for files). `progress=None` shows a bar for long
    videos only. Raises `FileNotFoundError`, `IsADirectoryError` or `ValueError` naming the input and what is wrong
    with it.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    name = describe_source(source)
    if is_image(source):
        frame = av.VideoFrame.from_ndarray(rgb_array(source, name), format="rgb24")
        check_frame_size(name, frame.width, frame.height, max_frame_pixels)
        with FrameResizer(frame_transform, threaded=False, thumbnail_height=thumbnail_height) as resizer:
            resizer.submit(frame)
            (pixels,), thumbnails = resizer.results()
        thumbnails = np.stack(thumbnails) if thumbnail_height is not None else None
        duration = 1.0 / fps
        return DecodedVideo(name, pixels[None], np.zeros(1), duration, 0.0, 1, is_image=True, thumbnails=thumbnails)
    with open_frames(source, name, video_fps) as frames:
        check_frame_size(name, frames.width, frames.height, max_frame_pixels)
        show = progress if progress is not None else (frames.expected_frames or 0) >= PROGRESS_MIN_FRAMES
        with tqdm(total=frames.expected_frames, unit="frame", desc=f"decoding {name}", disable=not show) as bar:
            plan = plan_parts(frames) if isinstance(frames, FileFrames) else None
            sampling = Sampling(frame_transform, fps, max_frame_pixels, thumbnail_height)
            result = decode_in_parts(frames, plan, sampling, cut_detector, bar) if plan is not None else None
            if result is None:
                bar.reset()
                result = decode_in_one_pass(frames, sampling, cut_detector, bar)
        if result.count == 0:
            raise ValueError(f"{name}: the video stream holds no decodable frame.")
        if is_truncated(result.count, frames.expected_frames):
            raise ValueError(
                f"{name}: decoding stopped after {result.count} of the {frames.expected_frames} frames the file "
                f"declares (at {result.last_time:.2f} s); the file is truncated or corrupt."
            )
        frame_rate = float(frames.frame_rate)
    return DecodedVideo(
        name=name,
        frames=np.stack(result.frames),
        timestamps=np.asarray(result.timestamps, dtype=np.float64),
        duration=result.last_time + 1.0 / frame_rate,
        frame_rate=frame_rate,
        num_decoded_frames=result.count,
        cut_times=cut_detector.finish() if cut_detector is not None else [],
        thumbnails=np.stack(result.thumbnails) if thumbnail_height is not None else None,
    )


def decode_in_one_pass(
    frames: FileFrames | MemoryFrames, sampling: Sampling, cut_detector: SceneCutDetector | None, bar: tqdm
) -> LoopResult:
    """Every frame of `frames` on this thread, with detection and the resize each on a thread of their own."""
    detection = DetectionThread(cut_detector.process) if cut_detector is not None else nullcontext()
    with detection as detection:
        detect = detection.submit if detection is not None else None
        return run_frame_loop(frames.frames(), frames.name, sampling, detect, bar, threaded_resize=True)

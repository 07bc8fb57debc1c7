"""One decode pass per video with PyAV: scene cuts from every frame and the 1 FPS frames, together.

A video can be a path, a binary file-like object, frames already in memory (a `(T, H, W, 3)` array or a list of
PIL images, with their frame rate), or a single image (`(H, W, 3)` array or PIL image), which is a one-frame,
one-segment video. Frame times come from presentation timestamps, so variable-frame-rate files sample
correctly; display rotation is applied; frames are resized to the tower size inside the loop, so memory stays
flat whatever the video's length.
"""

import bisect
import collections
import dataclasses
import itertools
import math
import os
import re
import statistics
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .frame_preprocessing import FrameTransform
from .scene_detection import DetectionThread, FrameStamp, SceneCutDetector, SparseCutSearch

VideoInput = str | os.PathLike | BinaryIO | np.ndarray | Image.Image | Sequence[Image.Image]

# 8K UHD is 33 Mpx; anything far above is a mistake or a crafted header, and one frame of it is gigabytes.
DEFAULT_MAX_FRAME_PIXELS = 64 * 1024 * 1024
# Share of a file's declared frames that may be missing (dropped leading B-frames) before it counts as damaged.
MISSING_FRAMES_TOLERANCE = 0.01
# Decoding shows a progress bar from this many frames on (about 10 minutes at 25 FPS).
PROGRESS_MIN_FRAMES = 15_000
DETECTION_MODES = ("exact", "fast")
# FFmpeg's name for discarding the frames no other frame references (B-frames, bar those of a B-pyramid).
SKIP_NON_REFERENCE = "NONREF"
# FFmpeg's name for discarding every B-frame, the B-pyramid's reference ones too. Exact only for streams whose
# P-frames never reference a B-frame; H.264 does not say so in its headers, but x264 with one reference frame
# (`ref=1`, its fast presets) only ever predicts a P-frame from the I- or P-frame before it, and says so in the
# options it writes into the stream.
SKIP_B_FRAMES = "BIDIR"
_X264_OPTIONS = re.compile(rb"x264 - core \d+.{0,200}? options: ([^\x00]*)", re.DOTALL)
# x264 writes its options into the first packet's SEI, ahead of the picture data.
_ENCODER_INFO_BYTES = 8192
# Reference-frame sampling of a long file runs as parts decoded side by side, one per core (at most this many),
# each part at least this long, cut at key frames.
MAX_PARALLEL_PARTS = 8
MIN_PARALLEL_PART_SECONDS = 60.0
# A full decode of a file is cut into parts decoded side by side, one per core (at most `MAX_PARALLEL_PARTS`), each
# at least this long, at key frames no frame presented before them follows: a part's decoder on one thread (or on
# its share of the cores) spends less CPU a frame than FFmpeg's frame threads over all cores, and each part scores
# and samples its own frames next to its decode.
MIN_EXACT_PART_SECONDS = 4.0
# Most consecutive non-reference frames expected (x264's longest B-frame run is 16).
MAX_NON_REFERENCE_RUN = 16
# Packets read ahead of the decoder in the fast mode: more than any reordering delay between decoding order and
# presentation order, so that a key frame is known before the frames presented just before it are decoded.
PACKET_LOOKAHEAD = 2 * MAX_NON_REFERENCE_RUN + 8
# A scene change the encoder did not start a key frame at still shows in the packets: the I- or P-frame after it is
# mostly intra-coded, several times larger than the I- and P-frames before it in its group of pictures (compared
# with the median of the last few). The fast mode decodes every frame around such a frame as it does around key
# frames; a cut this misses is still found, on a window decoded afterwards.
LARGE_REFERENCE_PACKET_RATIO = 2.0
REFERENCE_PACKET_HISTORY = 9


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


def sampling_instant_index(seconds: float, sampling_fps: float) -> int:
    """`k` of the sampling instant `k / sampling_fps` a frame at `seconds` covers (the last at or before it);
    tolerant to timestamp rounding, so a frame stamped a hair before an instant still counts as at it."""
    return math.floor(seconds * sampling_fps + 1e-6)


def next_sampling_instant(seconds: float, sampling_fps: float) -> float:
    """The sampling instant `k / sampling_fps` after the one a frame at `seconds` covers."""
    return (sampling_instant_index(seconds, sampling_fps) + 1) / sampling_fps


def decode_video(
    source: VideoInput,
    frame_transform: FrameTransform,
    sampling_fps: float = 1.0,
    cut_detector: SceneCutDetector | None = None,
    video_fps: float | None = None,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    progress: bool | None = None,
    detection_mode: str = "exact",
    sample_reference_frames_only: bool = False,
) -> DecodedVideo:
    """Decodes `source` once: feeds every frame to `cut_detector` and keeps the first frame of each
    `1 / sampling_fps` seconds, resized by `frame_transform`.

    `video_fps` is the frame rate of in-memory frames (ignored for files). `progress=None` shows a bar for long
    videos only.

    `detection_mode="fast"` (files, with a `cut_detector`) decodes only the reference frames (FFmpeg skips the
    others; all B-frames where the stream shows that no P-frame references one, see
    `_FileFrames.b_frame_structure`), finds candidate cuts on them and decodes every frame of a short window around
    each candidate to place the cut on the exact frame with the detector's own scores and rule (see
    `SparseCutSearch`). Each 1 FPS frame is then the decoded frame nearest to its instant, which can lie a few
    frames from the one `"exact"` keeps (at most half the longest run of skipped frames, plus one), and is the very
    frame a full decode gives at its time.

    `sample_reference_frames_only=True` is for callers that need no cuts (no `cut_detector`; e.g. fixed-length
    segments): only the reference frames are decoded, and the 1 FPS frames are the decoded frames nearest to
    their instants, as in the fast mode. In both, where every B-frame is skipped, a long file is decoded as parts
    side by side, one per core, cut at key frames, with the very result of one pass (see `_sparse_pass`).
    In-memory frames and images are always handled exactly. In the exact mode, a file long enough for parts of
    `MIN_EXACT_PART_SECONDS` with key frames that start closed groups of pictures is decoded as parts side by side
    too, again with the very result of one pass (see `_parts_pass`).

    `num_decoded_frames` counts the frames the decoder returned (all of them in the exact mode). Raises
    `FileNotFoundError`, `IsADirectoryError` or `ValueError` naming the input and what is wrong with it.
    """
    if sampling_fps <= 0:
        raise ValueError(f"sampling_fps must be positive, got {sampling_fps}.")
    if detection_mode not in DETECTION_MODES:
        raise ValueError(f"detection_mode must be one of {DETECTION_MODES}, got {detection_mode!r}.")
    if sample_reference_frames_only and cut_detector is not None:
        raise ValueError(
            "sample_reference_frames_only=True decodes too few frames for cut detection; pass cut_detector=None, "
            'or detection_mode="fast" to detect cuts on the reference frames.'
        )
    name = describe_source(source)
    if _is_image(source):
        frame = av.VideoFrame.from_ndarray(_rgb_array(source, name), format="rgb24")
        _check_frame_size(name, frame.width, frame.height, max_frame_pixels)
        return DecodedVideo(name, frame_transform(frame)[None], np.zeros(1), 1.0 / sampling_fps, 0.0, 1, is_image=True)
    with _open_frames(source, name, video_fps) as frames:
        _check_frame_size(name, frames.width, frames.height, max_frame_pixels)
        sparse = frames.from_file and (sample_reference_frames_only or (detection_mode == "fast" and cut_detector))
        arguments = (frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress)
        if sparse:
            return _sparse_pass(frames, *arguments)
        part_starts = frames.exact_part_starts() if frames.from_file else []
        if part_starts:
            try:
                return _parts_pass(frames, part_starts, *arguments)
            except _MisalignedPart:  # a part did not start or end on its key frame: one pass, as if it had no parts
                frames.reset_for_one_pass()
        return _decode_pass(frames, *arguments)


def _decode_pass(frames, frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress) -> DecodedVideo:
    bar = _progress_bar(frames, progress)
    timestamps = []
    sampler = _FirstFrameAtInstants(sampling_fps)
    last_time, count, reported = 0.0, 0, 0
    detection_thread = DetectionThread(cut_detector.process) if cut_detector is not None else nullcontext()
    with _ResizeThread(frame_transform) as resizer, detection_thread as detection:
        for frame, seconds, stamp in frames:
            if count == 0:
                _check_frame_size(frames.name, frame.width, frame.height, max_frame_pixels)
            count += 1
            last_time = seconds
            if detection is not None:
                detection.submit(frame, stamp)
            if sampler.keeps(seconds):
                resizer.submit(frame, frame.rotation if frames.from_file else 0)
                timestamps.append(seconds)
                bar.update(count - reported)
                reported = count
        sampled = resizer.results()
    bar.update(count - reported)
    bar.close()
    _check_complete(frames, count, last_time)
    return _decoded_video(frames, sampled, timestamps, last_time, count, cut_detector)


def _decoded_video(frames, sampled: list, timestamps: list, last_time: float, count: int, cuts) -> DecodedVideo:
    """The `DecodedVideo` of a pass: its sampled frames and their times, the time of the video's last frame, the
    frames decoded, and `cuts`, the detector (or fast-mode search) that saw them, or `None`."""
    return DecodedVideo(
        name=frames.name,
        frames=np.stack(sampled),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        duration=last_time + 1.0 / float(frames.frame_rate),
        frame_rate=float(frames.frame_rate),
        num_decoded_frames=count,
        cut_times=cuts.finish() if cuts is not None else [],
    )


def _check_complete(frames, count: int, last_time: float) -> None:
    """Raises when a full decode returned no frame, or far fewer than the file declares: a threaded decoder can
    stop at damaged data without raising; the container's index tells."""
    if count == 0:
        raise ValueError(f"{frames.name}: the video stream holds no decodable frame.")
    if frames.expected_frames and count < frames.expected_frames * (1 - MISSING_FRAMES_TOLERANCE) - 1:
        raise ValueError(
            f"{frames.name}: decoding stopped after {count} of the {frames.expected_frames} frames the file "
            f"declares (at {last_time:.2f} s); the file is truncated or corrupt."
        )


class _FirstFrameAtInstants:
    """The exact decode's sampling: the first frame at or after each sampling instant `k / fps`.

    `after` seconds: start as a sampler that has been shown every frame up to one at that time, whether it kept
    it or not (the next instant it waits for is the first after that frame either way), for a part of the video
    starting at a frame the part before it was shown.
    """

    def __init__(self, sampling_fps: float, after: float | None = None):
        self.sampling_fps = sampling_fps
        self._next_index = 0 if after is None else sampling_instant_index(after, sampling_fps) + 1

    def keeps(self, seconds: float) -> bool:
        """Whether the next frame, at `seconds`, is kept."""
        index = sampling_instant_index(seconds, self.sampling_fps)
        if index < self._next_index:
            return False
        self._next_index = index + 1
        return True


class _MisalignedPart(Exception):
    """A part of a parts pass did not start on its key frame (the container's seek missed it)."""


def _parts_pass(
    frames, part_starts: list[int], frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress
) -> DecodedVideo:
    """Every frame, as parts decoded side by side, with the very result of `_decode_pass`.

    The parts are cut at key frames after which no frame presented before them follows (see
    `_FileFrames.exact_part_starts`), so a part decoded from its key frame on gives the frames one pass gives.
    Each part but the last decodes through the key frame the next one starts at; each part but the first takes
    that key frame as the frame before its own, for its sampling (`_FirstFrameAtInstants`) and for its first
    content score. The scores are then fed to the detector's adaptive rule in order, across the parts.
    """
    bar = _progress_bar(frames, progress)
    try:
        parts = _side_by_side(
            _full_part, frames, part_starts, frame_transform, sampling_fps, cut_detector, max_frame_pixels, bar
        )
    finally:
        bar.close()
    count = sum(part.count for part in parts)
    _check_complete(frames, count, parts[-1].last_time)
    if cut_detector is not None:
        first_index = 0  # in the whole video, of the part's first frame (from which its own indices count)
        for number, part in enumerate(parts):
            for stamp, score in part.scores:
                cut_detector.process_score(stamp._replace(index=stamp.index + first_index), score)
            # Its last frame, which the next part starts at; the first part counts its own first frame.
            first_index += part.count - 1 if number == 0 else part.count
    sampled = [frame for part in parts for frame in part.frames]
    timestamps = [time for part in parts for time in part.timestamps]
    return _decoded_video(frames, sampled, timestamps, parts[-1].last_time, count, cut_detector)


@dataclass
class _FullPart:
    """What one part of `_parts_pass` gave: its 1 FPS frames and their times, its frames' content scores with
    their stamps (part-local indices), how many frames it holds (not counting the one it starts at, which the part
    before holds) and its last frame's time."""

    frames: list[np.ndarray]
    timestamps: list[float]
    scores: list[tuple[FrameStamp, float]]
    count: int
    last_time: float


def _full_part(
    frames, start_pts, stop_pts, frame_transform, sampling_fps, cut_detector, max_frame_pixels, bar, failed
) -> _FullPart:
    """One part of `_parts_pass`, scored, sampled and resized on the decoding thread (the parts fill the cores),
    with a scaler and a detector of its own; it gives up when the `failed` event is set."""
    transform = dataclasses.replace(frame_transform)
    detector = cut_detector.replica() if cut_detector is not None else None
    sampler, kept, timestamps, scores = None, [], [], []
    count, reported, last_time = 0, 0, 0.0
    for frame, seconds, stamp in frames.frames_of_part(start_pts, stop_pts):
        if failed.is_set():
            break
        score = detector.score(frame) if detector is not None else None
        if sampler is None:
            _check_frame_size(frames.name, frame.width, frame.height, max_frame_pixels)
            if start_pts is not None:  # the key frame the part before ended on
                sampler = _FirstFrameAtInstants(sampling_fps, after=seconds)
                continue
            sampler = _FirstFrameAtInstants(sampling_fps)
        count += 1
        last_time = seconds
        if score is not None:
            scores.append((stamp, score))
        if sampler.keeps(seconds):
            kept.append(transform(frame, frame.rotation))
            timestamps.append(seconds)
            bar.update(count - reported)
            reported = count
    bar.update(count - reported)
    return _FullPart(kept, timestamps, scores, count, last_time)


def _sparse_pass(frames, frame_transform, sampling_fps, cut_detector, max_frame_pixels, progress) -> DecodedVideo:
    """Reference frames only: the 1 FPS frames from them, and cuts placed by `SparseCutSearch` when detecting.

    A long file whose B-frames can all be skipped is decoded as parts side by side, one per core, cut at key frames
    (`_FileFrames.parallel_part_starts`). Each part but the last decodes through the key frame the next one starts
    at; each part but the first starts as one pass stands after that key frame (the next sampling instant after
    it, and the key frame as the frame before, for the sampler and for the detector's scores). Parts are cut only
    where frames lie so close that no frame can be the nearest to instants on both sides of a key frame, so the
    result is the very result of one pass; a part the container cannot seek to makes it one pass after all. The
    windows that cut placement still needs afterwards are then decoded side by side too (`_decoded_windows`).
    """
    part_starts = frames.parallel_part_starts(sampling_fps)
    bar = _progress_bar(frames, progress)
    arguments = (frame_transform, sampling_fps, cut_detector, max_frame_pixels, bar)
    try:
        parts = _side_by_side(_sparse_part, frames, part_starts, *arguments) if part_starts else None
    except _MisalignedPart:  # a part did not start or end on its key frame: one pass, as if it had no parts
        part_starts, parts = [], None
        frames.reset_for_one_pass()
        bar.reset()
    if parts is None:
        parts = [_sparse_part(frames, None, None, *arguments)]
    bar.update((bar.total or bar.n) - bar.n)  # the frames skipped after the last decoded one
    bar.close()
    frame_duration = 1.0 / float(frames.frame_rate)
    last_time = parts[-1].last_time
    # Between the last reference frame and the last frame lie at most a few non-reference frames.
    if (
        frames.expected_frames
        and parts[-1].last_decoded_time
        < (frames.expected_frames - 1) * frame_duration * (1 - MISSING_FRAMES_TOLERANCE)
        - MAX_NON_REFERENCE_RUN * frame_duration
    ):
        raise ValueError(
            f"{frames.name}: decoding stopped at {parts[-1].last_decoded_time:.2f} s of the {frames.expected_frames} "
            "frames the file declares; the file is truncated or corrupt."
        )
    count = sum(part.count for part in parts)
    search = SparseCutSearch.joined([part.search for part in parts]) if cut_detector is not None else None
    if search is not None:
        spans = [(start, min(end, last_time)) for start, end in search.windows(frame_duration)]
        spans = [span for span in spans if not search.judge_kept_window(*span)]
        for window in _decoded_windows(frames, spans, side_by_side=bool(part_starts)):
            count += len(window)
            search.add_window([(frame, stamp) for frame, _, stamp in window])
    sampled = [frame for part in parts for frame in part.frames]
    timestamps = [time for part in parts for time in part.timestamps]
    return _decoded_video(frames, sampled, timestamps, last_time, count, search)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a container or `taskset` can
    narrow it; FFmpeg's threads count it too), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _side_by_side_workers(tasks: int) -> int:
    return min(tasks, usable_cores())


def _decoded_windows(frames, spans: list[tuple[float, float]], side_by_side: bool) -> Iterator[list]:
    """Every frame of each `(start, end)` span (`_FileFrames.all_frames_between`), span by span in order.
    `side_by_side`: the spans are split into one run of consecutive spans per core, each run on a decoder of its
    own (`_FileFrames.reopened`)."""
    workers = _side_by_side_workers(len(spans)) if side_by_side else 1
    if workers < 2:
        for start, end in spans:
            yield frames.all_frames_between(start, end)
        return
    run_length = -(-len(spans) // workers)
    runs = [spans[index : index + run_length] for index in range(0, len(spans), run_length)]

    def decode_run(run):
        with frames.reopened() as run_frames:
            return [run_frames.all_frames_between(start, end) for start, end in run]

    with ThreadPoolExecutor(len(runs), thread_name_prefix="decode-window") as executor:
        for windows in executor.map(decode_run, runs):
            yield from windows


@dataclass
class _SparsePart:
    """What one part of `_sparse_pass` kept: its 1 FPS frames, their times, the frames it decoded, its scores
    (`search`), the time of its last decoded frame and of the file's last frame (known to the last part)."""

    frames: list[np.ndarray]
    timestamps: list[float]
    count: int
    search: SparseCutSearch | None
    last_decoded_time: float
    last_time: float


def _side_by_side(part: Callable, frames, part_starts: list[int], *arguments) -> list:
    """`part(part_frames, start_pts, stop_pts, *arguments, failed=event)` for each part between `part_starts` (and
    the stream's start and end), each on a decoder of its own (`_FileFrames.reopened`) with its share of the cores,
    side by side; their results in order. The first part to raise sets `failed`, at which the others stop at their
    next frame, and its error is raised (`_MisalignedPart` where the container could not seek to a part's key
    frame)."""
    bounds = list(zip([None, *part_starts], [*part_starts, None], strict=True))
    failed = threading.Event()
    threads = _threads_per_part(len(bounds))

    def run(start_pts, stop_pts):
        with frames.reopened(threads) as part_frames:
            return part(part_frames, start_pts, stop_pts, *arguments, failed=failed)

    with ThreadPoolExecutor(_side_by_side_workers(len(bounds)), thread_name_prefix="decode-part") as executor:
        futures = [executor.submit(run, start_pts, stop_pts) for start_pts, stop_pts in bounds]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        # The failed parts are those done with an error now; the others, stopping, may fail for that alone.
        errors = [error for future in done if (error := future.exception()) is not None]
        if errors:
            failed.set()
            raise errors[0]
        return [future.result() for future in futures]


def _threads_per_part(parts: int) -> int:
    """Decoder threads for each of `parts` parts decoded side by side: the cores shared out, at least one."""
    return max(1, usable_cores() // parts)


def _sparse_part(
    frames, start_pts, stop_pts, frame_transform, sampling_fps, cut_detector, max_frame_pixels, bar, failed=None
) -> _SparsePart:
    """One part of `_sparse_pass` (the whole file when `start_pts` and `stop_pts` are `None`), with a scaler and
    a detector of its own; it gives up when the `failed` event (of parts side by side) is set."""
    search = SparseCutSearch(cut_detector.replica()) if cut_detector is not None else None
    frame_duration = 1.0 / float(frames.frame_rate)
    around_anchors = search.anchor_span(frame_duration) if search is not None else None
    detection_thread = DetectionThread(search.process) if search is not None else nullcontext()
    with _ResizeThread(dataclasses.replace(frame_transform)) as resizer, detection_thread as detection:
        sampler = _NearestFrameSampler(resizer, sampling_fps)
        # Without cuts to find, nothing before a key frame preceding the next sampling instant is needed.
        next_needed = sampler.next_instant if search is None else None
        count, reported = 0, None
        part = (start_pts, stop_pts)
        for frame, seconds, stamp, near_anchor in frames.reference_frames(around_anchors, next_needed, part):
            if failed is not None and failed.is_set():
                break
            if count == 0:
                _check_frame_size(frames.name, frame.width, frame.height, max_frame_pixels)
            # The key frame this part starts at ends the part before, which scored, kept and sampled it.
            ends_part_before = count == 0 and start_pts is not None
            if detection is not None:
                detection.submit(frame, stamp, near_anchor and not ends_part_before, not ends_part_before)
            if ends_part_before:
                sampler.continue_after(frame, seconds)
                reported = seconds
            elif sampler.offer(frame, seconds):
                bar.update(round((seconds - (reported or 0.0)) * float(frames.frame_rate)))
                reported = seconds
            count += 1
        if count == 0:
            raise ValueError(f"{frames.name}: the video stream holds no decodable frame.")
        last_time = max(frames.last_packet_time, sampler.last_time)
        if stop_pts is None:
            sampler.finish(last_time)
        kept = resizer.results()
    return _SparsePart(kept, sampler.timestamps, count, search, sampler.last_time, last_time)


class _ResizeThread:
    """Applies a `FrameTransform` to the kept frames on a worker thread, so that the decoding thread keeps feeding
    the decoder; `results` gives them in order. At most `max_pending` full-size frames wait. Use as a context manager.
    """

    def __init__(self, frame_transform: FrameTransform, max_pending: int = 8):
        self.frame_transform = frame_transform
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-resize")
        self._pending: collections.deque[Future] = collections.deque()
        self._done: list[np.ndarray] = []

    def __enter__(self) -> "_ResizeThread":
        return self

    def submit(self, frame: av.VideoFrame, rotation: int) -> None:
        self._pending.append(self._executor.submit(self.frame_transform, frame, rotation))
        while len(self._pending) > self.max_pending:
            self._done.append(self._pending.popleft().result())

    def results(self) -> list[np.ndarray]:
        """`(size, size, 3)` uint8 frames, one per `submit`, in order."""
        while self._pending:
            self._done.append(self._pending.popleft().result())
        return self._done

    def __exit__(self, *exc_info) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class _NearestFrameSampler:
    """Keeps, for each sampling instant `k / fps`, the offered frame nearest to it (each frame at most once)."""

    def __init__(self, resizer: _ResizeThread, sampling_fps: float):
        self.resizer = resizer
        self.sampling_fps = sampling_fps
        self.timestamps: list[float] = []
        self.last_time = 0.0
        self._next_instant = 0.0
        self._previous: tuple[av.VideoFrame, float] | None = None

    def offer(self, frame: av.VideoFrame, seconds: float) -> bool:
        """Returns whether a frame was kept."""
        kept = False
        if seconds + 1e-6 >= self._next_instant:
            previous = self._previous
            sampled_before = self.timestamps[-1] if self.timestamps else -math.inf
            if (
                previous is not None
                and previous[1] > sampled_before
                and (self._next_instant - previous[1] < seconds - self._next_instant)
            ):
                self._keep(*previous)
            else:
                self._keep(frame, seconds)
            self._next_instant = next_sampling_instant(seconds, self.sampling_fps)
            kept = True
        self._previous = (frame, seconds)
        self.last_time = seconds
        return kept

    def next_instant(self) -> float:
        return self._next_instant

    def continue_after(self, frame: av.VideoFrame, seconds: float) -> None:
        """Stands as a sampler that has been offered every frame up to `frame` would, bar what it kept: `frame`
        is the frame before the next one offered and the next instant is the first after it."""
        self._previous = (frame, seconds)
        self._next_instant = next_sampling_instant(seconds, self.sampling_fps)
        self.last_time = seconds

    def finish(self, last_frame_time: float) -> None:
        """Samples the last instant from the last offered frame when the video (`last_frame_time`, the time of its
        last frame, decoded or not) reaches that instant."""
        frame, seconds = self._previous
        if seconds > self.timestamps[-1] and self._next_instant <= last_frame_time + 1e-6:
            self._keep(frame, seconds)

    def _keep(self, frame: av.VideoFrame, seconds: float) -> None:
        self.resizer.submit(frame, frame.rotation)
        self.timestamps.append(seconds)


def _progress_bar(frames, progress: bool | None) -> tqdm:
    show_progress = progress if progress is not None else (frames.expected_frames or 0) >= PROGRESS_MIN_FRAMES
    return tqdm(total=frames.expected_frames, unit="frame", desc=f"decoding {frames.name}", disable=not show_progress)


class _FileFrames:
    """Frames of a video file, in presentation order, with times from the first frame."""

    from_file = True

    def __init__(self, source, name: str):
        self.name = name
        source = _checked_file_source(source, name)
        self._source = source
        try:
            self._container = av.open(source)
        except (av.error.FFmpegError, UnicodeDecodeError) as error:
            raise ValueError(f"{name}: not a readable video file ({error}).") from error
        if not self._container.streams.video:
            kinds = sorted({stream.type for stream in self._container.streams}) or ["none"]
            self._container.close()
            raise ValueError(f"{name}: has no video stream (streams found: {', '.join(kinds)}).")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        # The stream's time base as an exact fraction, the one all times here use (decoded frames carry it too).
        self._time_base = Fraction(self._stream.time_base)
        context = self._stream.codec_context
        self.width, self.height = context.width, context.height
        self.frame_rate = Fraction(self._stream.average_rate or self._stream.guessed_rate or 25)
        self.expected_frames = self._presented_frames()
        self.last_packet_time = 0.0
        # Set from the first packet (see `b_frame_structure`) by `reference_frames` or `parallel_part_starts`.
        self._b_frames_probed = False
        self._skips_b_frames = False
        self._b_frame_run_ticks = 0
        self._first_pts: int | None = None
        self._index = 0

    def _presented_frames(self) -> int | None:
        """The frames the stream presents, as far as the container tells: its sample count, or fewer where its
        duration holds fewer (an edit list presents only part of the samples, as in a file cut without
        re-encoding, whose first group of pictures starts before the cut)."""
        declared = self._stream.frames or None
        if declared is None or not self._stream.duration:
            return declared
        return min(declared, math.ceil(self._stream.duration * self._time_base * self.frame_rate))

    def __iter__(self) -> Iterator[tuple[av.VideoFrame, float, FrameStamp]]:
        """Every frame, with its time in seconds and its place for the detector."""
        with self._decoding_errors():
            for frame in self._container.decode(self._stream):
                yield self._timed(frame)

    def reference_frames(
        self,
        around_anchors: tuple[float, float] | None = None,
        next_needed: Callable[[], float] | None = None,
        part: tuple[int | None, int | None] = (None, None),
    ) -> Iterator[tuple[av.VideoFrame, float, FrameStamp, bool]]:
        """The frames other frames reference (FFmpeg skips the rest), from the start, each with its time, its
        place for the detector and whether it lies around an anchor (see below).

        Where the stream allows it (see `b_frame_structure`), B-frames are all skipped, the reference ones of a
        B-pyramid too, leaving the I- and P-frames. `around_anchors=(before, after)` seconds: every frame that close
        to an anchor is decoded too, and, when B-frames are skipped, the reference frames one B-frame run further
        (those frames' own references). Anchors are the key frames (bar the first) and the reference frames much
        larger than the ones before them in their group of pictures (`LARGE_REFERENCE_PACKET_RATIO`): encoders
        start a key frame at most scene cuts and spend many bits on the first frame after the others, so this
        yields the full windows cut placement needs there without a second decoder. Packets are read ahead so that
        an anchor is known before the frames presented just before it are decoded; anchors depend only on the
        packets since the last key frame, so parts find the same ones as one pass. Records the last frame's time
        (`last_packet_time`) from the packets.

        `part=(start, stop)` pts: from the key frame at `start` through the key frame at `stop` (`None`: the
        stream's start, its end), for parts decoded side by side once the stream is probed (`reopened`); frames are
        skipped the same way only where all B-frames are, as no P-frame then lies across a key frame from its
        reference. Raises `_MisalignedPart` when the part does not start on the key frame at `start` (the first
        part: when its first frame is not at the stream's start time) or does not reach the one at `stop`.
        """
        start_pts, stop_pts = part
        context = self._stream.codec_context
        time_base = self._time_base
        before, after = (round(seconds / time_base) for seconds in around_anchors or (0.0, 0.0))
        anchor_pts: list[int] = []  # pts of the anchors of full runs read so far

        def near_anchor(pts, margin: int = 0) -> bool:
            if around_anchors is None or pts is None:
                return False
            position = bisect.bisect_left(anchor_pts, pts - after - margin)
            return position < len(anchor_pts) and anchor_pts[position] <= pts + before + margin

        def skip_level(pts) -> str:
            if near_anchor(pts):
                return "DEFAULT"
            return self._sparse_skip_level(near=near_anchor(pts, self._b_frame_run_ticks))

        check_first_frame = start_pts is None and stop_pts is not None  # the first of parts side by side

        def decode(packet):
            nonlocal check_first_frame
            context.skip_frame = skip_level(packet.pts)
            for frame in packet.decode():
                if frame.pts is None:
                    raise ValueError(
                        f"{self.name}: frames carry no timestamps, which the reference-frame decode needs; "
                        'use detection_mode="exact".'
                    )
                if check_first_frame:
                    check_first_frame = False
                    if (error := self._first_frame_error(frame, None)) is not None:
                        raise error
                yield *self._timed(frame), near_anchor(frame.pts)

        def skippable(packet) -> bool:
            """A packet decoded before a key frame that lies ahead, at or before the next time needed."""
            if next_needed is None or self._first_pts is None or packet.is_keyframe:
                return False
            needed_pts = self._first_pts + math.floor(next_needed() / time_base)
            return any(ahead.is_keyframe and ahead.pts is not None and ahead.pts <= needed_pts for ahead in lookahead)

        def ends_part(packet) -> bool:
            return stop_pts is not None and packet.pts == stop_pts

        lookahead: collections.deque = collections.deque()
        reference_sizes: collections.deque = collections.deque(maxlen=REFERENCE_PACKET_HISTORY)
        last_pts, first_key_seen, first_packet = None, False, True
        with self._decoding_errors():
            for packet in self._packets_from(start_pts):
                if first_packet:
                    first_packet = False
                    if not self._b_frames_probed:
                        self._probe_b_frames(packet)
                    if self._skips_b_frames:
                        # A cut at a key frame may lie anywhere in the gap from the P-frame before it.
                        before += self._b_frame_run_ticks
                if packet.pts is not None:
                    # A packet presented after every one read before it holds an I- or a P-frame.
                    reference = last_pts is None or packet.pts > last_pts
                    last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
                    if packet.is_keyframe:
                        # The stream's first key frame has no frames before it to decode in full.
                        if first_key_seen or start_pts is not None:
                            bisect.insort(anchor_pts, packet.pts)
                        first_key_seen = True
                        reference_sizes.clear()
                    elif reference:
                        if reference_sizes and packet.size >= LARGE_REFERENCE_PACKET_RATIO * statistics.median(
                            reference_sizes
                        ):
                            bisect.insort(anchor_pts, packet.pts)
                        reference_sizes.append(packet.size)
                lookahead.append(packet)
                if len(lookahead) > PACKET_LOOKAHEAD:
                    oldest = lookahead.popleft()
                    if not skippable(oldest):
                        yield from decode(oldest)
                    if ends_part(oldest):
                        break
            else:
                while lookahead:
                    oldest = lookahead.popleft()
                    yield from decode(oldest)
                    if ends_part(oldest):
                        break
                else:
                    if stop_pts is not None:
                        raise _MisalignedPart(
                            f"{self.name}: the part from pts {start_pts} does not reach pts {stop_pts}"
                        )
            if stop_pts is not None:
                # The frames still in the decoder's threads: none after `stop`, as no later packet was sent.
                for frame in self._drain_decoder():
                    yield *self._timed(frame), near_anchor(frame.pts)
        context.skip_frame = "DEFAULT"
        if last_pts is not None and self._first_pts is not None:
            self.last_packet_time = float((last_pts - self._first_pts) * time_base)

    def _probe_b_frames(self, first_packet: av.Packet) -> None:
        p_frames_reference_b_frames, longest_b_frame_run = self.b_frame_structure(first_packet)
        self._b_frames_probed = True
        if not p_frames_reference_b_frames:
            self._skips_b_frames = True
            self._b_frame_run_ticks = round((longest_b_frame_run + 1) / self.frame_rate / self._time_base)

    def parallel_part_starts(self, sampling_fps: float) -> list[int]:
        """pts of the key frames at which reference-frame sampling may be cut into parts decoded side by side (one
        per core, each at least `MIN_PARALLEL_PART_SECONDS`); empty when it may not: a file object, one core, a
        short video, B-frames that cannot all be skipped, or frames so far apart that one could be the nearest to
        instants on both sides of a key frame. Probes the stream (first packet, B-frames) on a container of its own.
        """
        time_base = self._time_base

        def b_frames_allow_parts(first_packet: av.Packet) -> bool:
            self._probe_b_frames(first_packet)
            largest_gap = self._b_frame_run_ticks * time_base
            return self._skips_b_frames and 2 * largest_gap < 1.0 / sampling_fps

        return self._part_starts(MIN_PARALLEL_PART_SECONDS, b_frames_allow_parts, closed_only=False)

    def exact_part_starts(self) -> list[int]:
        """pts of the key frames at which a full decode may be cut into parts decoded side by side (one per core,
        each at least `MIN_EXACT_PART_SECONDS`): those no frame presented before them follows in decoding order
        (a closed group of pictures, as an H.264 IDR frame starts), so that a part decoded from one of them holds
        every frame one pass gives from there. Empty when there are none or it may not: a file object, one core, a
        short video, frames without timestamps.
        """
        return self._part_starts(MIN_EXACT_PART_SECONDS, lambda first_packet: True, closed_only=True)

    def _part_starts(
        self, min_part_seconds: float, allowed: Callable[[av.Packet], bool], closed_only: bool
    ) -> list[int]:
        """pts of the key frames nearest to `parts - 1` evenly spaced times (parts of at least `min_part_seconds`,
        one per core), found on a container of its own; `allowed(first_packet)` may refuse parts. `closed_only`:
        only key frames no frame after them in decoding order is presented before (see `_key_frames`).

        With parts, the first frame's time is set from the stream's start time (else its first packet's), without
        decoding: the first part raises `_MisalignedPart` when the first frame it decodes is not at that time (see
        `_first_frame_error`), and the caller then decodes in one pass (`reset_for_one_pass`)."""
        duration = float(self._stream.duration * self._time_base) if self._stream.duration else 0.0
        parts = min(usable_cores(), MAX_PARALLEL_PARTS, int(duration // min_part_seconds))
        if not isinstance(self._source, str) or parts < 2:
            return []
        time_base = self._time_base
        with av.open(self._source) as probe:
            stream = probe.streams.video[0]
            first_packet = next(probe.demux(stream))
            # Where an edit list starts the stream after its first packet, the container says so.
            first_pts = self._stream.start_time if self._stream.start_time is not None else first_packet.pts
            if first_pts is None or not allowed(first_packet):
                return []
            starts = set()
            for index in range(1, parts):
                target = first_pts + round(index * duration / parts / time_base)
                probe.seek(target, stream=stream, backward=True)
                key_frames = _key_frames(probe.demux(stream))
                # The key frames on either side of the target: the nearer one balances the parts best.
                candidates = [
                    pts
                    for pts, closed in itertools.islice(key_frames, 2)
                    if pts is not None and pts > first_pts and (closed or not closed_only)
                ]
                if candidates:
                    starts.add(min(candidates, key=lambda pts: abs(pts - target)))
        if starts:
            self._first_pts = first_pts
        return sorted(starts)

    def reset_for_one_pass(self) -> None:
        """For one pass after the parts gave up (`_MisalignedPart`): the first frame's time is then taken from the
        first frame decoded (`_time_origin`), not from the container's start time read for the parts."""
        self._first_pts = None

    def _first_frame_error(self, frame: av.VideoFrame, start_pts: int | None) -> "_MisalignedPart | None":
        """For a part's first decoded frame: the error when it is not the key frame at `start_pts` (`None`: when
        the time it starts the stream at, `_time_origin`, is not the one `_part_starts` took from the container)."""
        expected, found = (self._first_pts, self._time_origin(frame)) if start_pts is None else (start_pts, frame.pts)
        if found == expected:
            return None
        return _MisalignedPart(f"{self.name}: the part from pts {expected} starts at pts {found}")

    def _time_origin(self, frame: av.VideoFrame) -> int:
        """The pts times count from, given the first frame a decode returned: that frame's, unless it is no key
        frame and the container starts the stream earlier, where a decode that skips frames skipped the frames
        shown before it (an edit list starting within a group of pictures, as in a file cut without re-encoding,
        can start the stream at a B-frame)."""
        start = self._stream.start_time
        if frame.key_frame or start is None:
            return frame.pts
        return min(start, frame.pts)

    def reopened(self, threads: int = 1) -> "_FileFrames":
        """The same file on a decoder of its own, with what was probed of the stream (its first frame's time,
        which frames may be skipped), for one of the parts or runs of windows decoded side by side: as they fill
        the cores, its decoder runs on `threads` threads (see `_threads_per_part`; frame threads beyond the cores
        would only add hand-offs)."""
        other = _FileFrames(self._source, self.name)
        other._stream.codec_context.thread_count = threads
        other._first_pts, other._b_frames_probed = self._first_pts, self._b_frames_probed
        other._skips_b_frames, other._b_frame_run_ticks = self._skips_b_frames, self._b_frame_run_ticks
        return other

    def _sparse_skip_level(self, near: bool) -> str:
        """What FFmpeg may skip outside full runs: the B-frames where allowed, but only the non-reference frames
        `near` a full run, whose B-frames may reference the B-frames just outside it."""
        return SKIP_B_FRAMES if self._skips_b_frames and not near else SKIP_NON_REFERENCE

    def b_frame_structure(self, first_packet: av.Packet) -> tuple[bool, int]:
        """`(p_frames_reference_b_frames, longest_b_frame_run)` as far as the stream tells: P-frames are known
        not to reference B-frames only in H.264 from x264 with one reference frame (from the options it writes
        into the first packet), which also gives the longest run of B-frames (else `MAX_NON_REFERENCE_RUN`)."""
        match = None
        if self._stream.codec_context.name == "h264":
            match = _X264_OPTIONS.search(bytes(first_packet)[:_ENCODER_INFO_BYTES])
        if match is None:
            return True, MAX_NON_REFERENCE_RUN
        options = dict(item.split(b"=", 1) for item in match.group(1).split() if b"=" in item)
        try:
            return int(options[b"ref"]) != 1, min(int(options[b"bframes"]), MAX_NON_REFERENCE_RUN)
        except (KeyError, ValueError):
            return True, MAX_NON_REFERENCE_RUN

    def frames_of_part(
        self, start_pts: int | None, stop_pts: int | None
    ) -> Iterator[tuple[av.VideoFrame, float, FrameStamp]]:
        """Every frame from the key frame at `start_pts` through the key frame at `stop_pts` (`None`: the stream's
        start, its end), each with its time and its place for the detector, for the parts of `_parts_pass`, which
        are cut at key frames `exact_part_starts` found. Raises `_MisalignedPart` when the part does not start on
        the key frame at `start_pts` (the stream's start time for the first part) or does not reach the one at
        `stop_pts`."""
        first_frame = True
        with self._decoding_errors():
            for packet in self._packets_from(start_pts):
                for frame in packet.decode():
                    if first_frame and (error := self._first_frame_error(frame, start_pts)) is not None:
                        raise error
                    first_frame = False
                    yield self._timed(frame)
                if stop_pts is not None and packet.pts == stop_pts:
                    # The frames still in the decoder: none after `stop`, as no later packet was sent.
                    for frame in self._drain_decoder():
                        yield self._timed(frame)
                    return
        if stop_pts is not None or first_frame:
            raise _MisalignedPart(f"{self.name}: the part from pts {start_pts} does not reach pts {stop_pts}")

    def _packets_from(self, start_pts: int | None) -> Iterator[av.Packet]:
        """The stream's packets in decoding order from the key frame at `start_pts` (`None`: from the stream's
        start), for a part decoded side by side. A seek may land on an earlier key frame (containers index them by
        decoding time); the packets before the part's key frame are then skipped, as they are all presented before
        it. Raises `_MisalignedPart` when the packets pass `start_pts` without it (the seek landed after it)."""
        if start_pts is not None:
            self._container.seek(start_pts, stream=self._stream, backward=True)
        packets = self._container.demux(self._stream)
        if start_pts is not None:
            missed = _MisalignedPart(f"{self.name}: the seek to pts {start_pts} missed its key frame")
            for packet in packets:
                if packet.pts == start_pts:
                    yield packet
                    break
                if packet.pts is not None and packet.pts > start_pts:
                    raise missed
            else:
                raise missed
        yield from packets

    def all_frames_between(self, start: float, end: float) -> list[tuple[av.VideoFrame, float, FrameStamp]]:
        """Every frame with a time in `[start, end]` seconds: seeks to a key frame before `start` and decodes only
        the reference frames up to `start` (as `reference_frames` does), then all."""
        time_base = self._time_base
        start_pts = self._first_pts + math.floor(start / time_base)
        end_pts = self._first_pts + math.ceil(end / time_base)
        margin = 0
        context = self._stream.codec_context
        while True:
            seek_pts = max(start_pts - margin, self._first_pts)
            self._container.seek(seek_pts, stream=self._stream, backward=True)
            window, earliest = [], math.inf
            with self._decoding_errors():
                for packet in self._container.demux(self._stream):
                    if packet.pts is None or packet.pts >= start_pts:
                        context.skip_frame = "DEFAULT"
                    else:
                        near = packet.pts >= start_pts - self._b_frame_run_ticks
                        context.skip_frame = self._sparse_skip_level(near)
                    frames = packet.decode()
                    earliest = min([earliest, *(frame.pts for frame in frames)])
                    window += [self._timed(frame) for frame in frames if start_pts <= frame.pts <= end_pts]
                    if any(frame.pts > end_pts for frame in frames):
                        break
                self._drain_decoder()
            context.skip_frame = "DEFAULT"
            # Containers index key frames by decoding time, which runs ahead of presentation by the reorder delay:
            # a seek can land on a key frame presented after `start`, which would leave the window's first frames
            # out. Seeking further back each time then finds the key frame before.
            if earliest <= start_pts or seek_pts == self._first_pts:
                return window
            margin = max(2 * margin, round(MAX_NON_REFERENCE_RUN / self.frame_rate / time_base))

    def _timed(self, frame: av.VideoFrame) -> tuple[av.VideoFrame, float, FrameStamp]:
        index = self._index
        self._index += 1
        if frame.pts is None:
            seconds = index / float(self.frame_rate)
            return frame, seconds, FrameStamp(seconds, index, self.frame_rate)
        if self._first_pts is None:
            self._first_pts = self._time_origin(frame)
        time_base = self._time_base
        pts = frame.pts - self._first_pts
        # Integer true division rounds once, as float(pts * time_base) does, without a Fraction per frame.
        seconds = pts * time_base.numerator / time_base.denominator
        return frame, seconds, FrameStamp(seconds, index, self.frame_rate, pts, time_base)

    @contextmanager
    def _decoding_errors(self):
        try:
            yield
        except av.error.FFmpegError as error:
            raise ValueError(
                f"{self.name}: decoding failed after {self._index} frames; the file is truncated or corrupt ({error})."
            ) from error

    def __enter__(self):
        return self

    def _drain_decoder(self) -> list[av.VideoFrame]:
        """The frames the decoder still holds, once its threads are done with every packet sent.

        A decoding loop that stops early drains the decoder before anything flushes it (a seek does) or frees it:
        a decoder thread may still be reporting an error through FFmpeg's log, whose Python callback needs the
        GIL, and flushing or freeing waits for the threads while holding the GIL.
        """
        try:
            frames = self._stream.codec_context.decode(None)
        except av.error.EOFError:  # already drained
            return []
        for frame in frames:
            frame.time_base = self._time_base
        return frames

    def __exit__(self, *exc_info):
        self._drain_decoder()
        self._container.close()


def _key_frames(packets: Iterator[av.Packet]) -> Iterator[tuple[int | None, bool]]:
    """`(pts, closed)` of each key frame among `packets`, in decoding order. Closed: none of the packets after it
    (up to the next key frame, and within the longest reordering delay) is presented before it, so no leading
    frame references the group of pictures before."""
    checking, key_pts, closed, packets_after = False, None, False, 0
    for packet in packets:
        if not packet.size:  # the end of the stream
            break
        if packet.is_keyframe:
            if checking:
                yield key_pts, closed
            checking, key_pts, closed, packets_after = True, packet.pts, packet.pts is not None, 0
        elif checking:
            closed = closed and packet.pts is not None and packet.pts > key_pts
            packets_after += 1
            if packets_after == PACKET_LOOKAHEAD:
                checking = False
                yield key_pts, closed
    if checking:
        yield key_pts, closed


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
            seconds = index / float(self.frame_rate)
            yield frame, seconds, FrameStamp(seconds, index, self.frame_rate)

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

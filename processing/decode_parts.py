"""A full decode of a file as parts decoded side by side, one per core, with the very result of one pass.

A part's decoder on one thread (or on its share of the cores) spends less CPU a frame than FFmpeg's frame threads
over all cores, and each part scores, samples and resizes its own frames next to its decode. The parts are cut at
key frames after which no frame presented before them follows in decoding order (a closed group of pictures, as an
H.264 IDR frame starts), so a part decoded from its key frame on gives the frames one pass gives from there. Each
part but the last decodes through the key frame the next one starts at; each part but the first takes that key
frame as the frame before its own, for its sampling and for its first content score. The scores then go through
the detector's adaptive rule in order, across the parts.
"""

import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import av
from tqdm.auto import tqdm

from .frame_loop import LoopResult, Sampling, run_frame_loop
from .scene_detection import FrameStamp, SceneCutDetector
from .video_frames import FileFrames, TimedFrame, time_origin

# At most this many parts, each at least this long.
MAX_PARTS = 8
MIN_PART_SECONDS = 4.0
# Packets read after a key frame to tell whether a frame presented before it follows: more than any reordering
# delay between decoding and presentation order (x264's longest B-frame run is 16).
REORDER_LOOKAHEAD_PACKETS = 40


@dataclass(frozen=True)
class PartPlan:
    """Where a file is cut into parts: the pts of the key frames the parts after the first start at, and the pts
    times count from (the stream's start time, else its first packet's), read from the container without decoding;
    the first part checks that its first frame is there."""

    starts: list[int]
    origin: int


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a container or `taskset` can
    narrow it; FFmpeg's threads count it too), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan_parts(frames: FileFrames) -> PartPlan | None:
    """The parts of `frames`: one per core, each at least `MIN_PART_SECONDS`, cut at the closed key frames nearest
    to the even split, found on a container of its own. None when there is no such key frame or parts do not pay:
    a file object (it cannot be opened again), one core, a short video, frames without timestamps."""
    stream, time_base = frames.stream, frames.time_base
    duration = float(stream.duration * time_base) if stream.duration else 0.0
    parts = min(usable_cores(), MAX_PARTS, int(duration // MIN_PART_SECONDS))
    if not isinstance(frames.source, str) or parts < 2:
        return None
    with av.open(frames.source) as probe:
        probe_stream = probe.streams.video[0]
        first_packet = next(probe.demux(probe_stream))
        # Where an edit list starts the stream after its first packet, the container says so.
        origin = stream.start_time if stream.start_time is not None else first_packet.pts
        if origin is None:
            return None
        starts = set()
        for index in range(1, parts):
            target = origin + round(index * duration / parts / time_base)
            probe.seek(target, stream=probe_stream, backward=True)
            # The closed key frames on either side of the target: the nearer one balances the parts best.
            candidates = [
                pts
                for pts, closed in itertools.islice(_key_frames(probe.demux(probe_stream)), 2)
                if pts is not None and pts > origin and closed
            ]
            if candidates:
                starts.add(min(candidates, key=lambda pts: abs(pts - target)))
    return PartPlan(sorted(starts), origin) if starts else None


def _key_frames(packets: Iterator[av.Packet]) -> Iterator[tuple[int | None, bool]]:
    """`(pts, closed)` of each key frame among `packets`, in decoding order. Closed: none of the packets after it
    (up to the next key frame, and within `REORDER_LOOKAHEAD_PACKETS`) is presented before it."""
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
            if packets_after == REORDER_LOOKAHEAD_PACKETS:
                checking = False
                yield key_pts, closed
    if checking:
        yield key_pts, closed


@dataclass
class _Part:
    """What one part gave: its loop's result and its frames' content scores with their stamps (part-local
    indices; a part after the first scores the frame it starts at too)."""

    loop: LoopResult
    scores: list[tuple[FrameStamp, float]]


def decode_in_parts(
    frames: FileFrames,
    plan: PartPlan,
    sampling: Sampling,
    cut_detector: SceneCutDetector | None,
    bar: tqdm,
) -> LoopResult | None:
    """Every frame of `frames`, as the parts of `plan` decoded side by side, each on a decoder of its own with its
    share of the cores; `cut_detector` gets their scores in order. None when a part did not start or end on its key
    frame (the container's seek missed it, or the first frame decoded is not at `plan.origin`): the caller then
    decodes in one pass. The first part to raise stops the others at their next frame, and its error is raised.
    """
    bounds = list(zip([None, *plan.starts], [*plan.starts, None], strict=True))
    threads = max(1, usable_cores() // len(bounds))
    stop, misaligned = threading.Event(), threading.Event()

    def run(start_pts: int | None, stop_pts: int | None) -> _Part:
        detector = cut_detector.replica() if cut_detector is not None else None
        scores = []

        def detect(frame, stamp):
            scores.append((stamp, detector.score(frame)))

        with frames.reopened(threads) as part_frames:
            loop = run_frame_loop(
                _aligned(part_frames, start_pts, stop_pts, plan.origin, misaligned, stop),
                frames.name,
                sampling,
                detect if detector is not None else None,
                bar,
                threaded_resize=False,
                continues_part=start_pts is not None,
                stop=stop,
            )
        return _Part(loop, scores)

    with ThreadPoolExecutor(min(len(bounds), usable_cores()), thread_name_prefix="decode-part") as executor:
        futures = [executor.submit(run, start_pts, stop_pts) for start_pts, stop_pts in bounds]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        # The failed parts are those done with an error now; the others, stopping, may fail for that alone.
        errors = [error for future in done if (error := future.exception()) is not None]
        if errors:
            stop.set()
            raise errors[0]
        parts = [future.result() for future in futures]
    if misaligned.is_set():
        return None
    if cut_detector is not None:
        first_index = 0  # in the whole video, of the part's first frame (from which its own indices count)
        for number, part in enumerate(parts):
            for stamp, score in part.scores[number > 0 :]:
                cut_detector.process_score(stamp._replace(index=stamp.index + first_index), score)
            # Its last frame, which the next part starts at; the first part counts its own first frame.
            first_index += part.loop.count - 1 if number == 0 else part.loop.count
    return LoopResult(
        frames=[frame for part in parts for frame in part.loop.frames],
        thumbnails=[thumbnail for part in parts for thumbnail in part.loop.thumbnails],
        timestamps=[seconds for part in parts for seconds in part.loop.timestamps],
        count=sum(part.loop.count for part in parts),
        last_time=parts[-1].loop.last_time,
    )


def _aligned(
    frames: FileFrames,
    start_pts: int | None,
    stop_pts: int | None,
    origin: int,
    misaligned: threading.Event,
    stop: threading.Event,
) -> Iterator[TimedFrame]:
    """The frames of the part from `start_pts` through `stop_pts`, ending early with `misaligned` and `stop` set
    when its first frame is not the key frame at `start_pts` (for the first part: when the time it starts the
    stream at is not `origin`), or when it ends without reaching the key frame at `stop_pts`."""
    first, reached_stop = True, stop_pts is None
    for timed in frames.part_frames(start_pts, stop_pts, origin):
        if first:
            if start_pts is None and time_origin(frames.stream, timed.frame) != origin:
                break
            if start_pts is not None and timed.frame.pts != start_pts:
                break
            first = False
        reached_stop = reached_stop or timed.frame.pts == stop_pts
        yield timed
    if first or not reached_stop:
        misaligned.set()
        stop.set()

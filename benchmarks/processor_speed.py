"""Processor wall time against a bare decode (the floor), by stage, side by side in one run.

For each video, interleaved `--repeats` times (median and spread reported, wall and CPU seconds):

- `bare_decode`: a bare PyAV decode of every frame, no conversion (the floor);
- `bare_decode_one_thread`: the same on one decoder thread, which spends the least CPU a frame (FFmpeg's frame
  threads hand frames over; the processor's parts each decode on one thread);
- `processor`: `SalovaProcessor(videos=..., text=...)` with the 7B settings (SigLIP 384: one decode pass,
  AdaptiveDetector cuts, 1 FPS frames, segments, tensors);
- `decode_detect`: `decode_video` with the AdaptiveDetector (the processor's decode: every frame, cuts, the 1 FPS
  frames); the processor adds segments, normalised tensors and tokens;
- `processor_one_pass` (with `--parts-ablation`): the processor decoding a file with closed key frames in one pass
  (`decode_parts.MIN_PART_SECONDS = inf`) instead of as parts side by side, to show what the parts gain;
- `two_pass` (with `--two-pass`): `scenedetect.detect(path, AdaptiveDetector())` and a second PyAV pass keeping
  one frame per second resized with PIL, what a user would write otherwise.

After the timed repeats, `stage_profile` times each stage of the processor on its own (CPU seconds: the decode,
the detector's downscale and colour conversion, its score and rule, the hand-off to its thread, the 1 FPS resize,
segments + tensors + tokens), which says where the time above the floor goes better than differences of noisy
wall times can. `exact_cpu_floor_over_bare_cpu` is the CPU the processor cannot do without (every frame decoded on
one thread, and given its detection image and score) over the bare decode's CPU: when the machine lends less than
its cores (other work, a busy host), the wall ratio tends to the CPU ratio, which cannot go below this floor.
`--cores N` runs everything on N of the cores this process may use (its affinity, which the processor reads).

The long video is made here (default 10 min of 1280x720 at 24 FPS, a cut every 4-20 s, textured panning scenes
with a moving object) and cached in `benchmarks/results/`; the real clips come from `shared/data/real-videos/`.
CPU seconds (all threads) tell more than wall seconds when other work shares the machine.

    python benchmarks/processor_speed.py [--minutes 10] [--repeats 5] [--two-pass] [--parts-ablation]
                                         [--real-clips-only] [--cores N]
                                         [--output results/processor_speed.json]
"""

import argparse
import json
import os
import statistics
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import scenedetect
from PIL import Image
from salova.hub_configs import build_tiny_tokenizer
from salova.processing import SalovaProcessor, SalovaVideoProcessor, decode_parts, decode_video
from salova.processing import video_processing_salova as video_processing_module
from salova.processing.decode_parts import usable_cores
from salova.processing.frame_sampling import SAMPLING_FPS, FirstFrameSampler
from salova.processing.scene_detection import DetectionThread, FrameStamp, content_score

from salova.video_writer import write_video

RESULTS = Path(__file__).parent / "results"
REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-videos"


def long_video_frames(minutes: float, fps: int, width: int, height: int, seed: int = 0):
    """Scenes of 4-20 s: a smooth random texture panning sideways, a bright box crossing it, light noise."""
    rng = np.random.default_rng(seed)
    total, made = round(minutes * 60 * fps), 0
    while made < total:
        length = min(total - made, int(rng.integers(4, 21)) * fps)
        coarse = rng.integers(0, 256, (9, 32, 3), dtype=np.uint8)
        canvas = np.asarray(Image.fromarray(coarse).resize((width * 2, height), Image.Resampling.BICUBIC))
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        step = int(rng.integers(1, 4))
        for index in range(length):
            frame = canvas[:, index * step % width : index * step % width + width].copy()
            left = index * (width - 120) // max(length - 1, 1)
            frame[height // 3 : height // 3 + 90, left : left + 120] = colour
            frame += rng.integers(0, 6, (1, width, 1), dtype=np.uint8)
            yield frame
        made += length


def bare_decode(path: Path, threads: int = 0) -> int:
    """Every frame decoded, nothing else; `threads=0`: as many decoder threads as FFmpeg picks for the cores."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def two_pass(path: Path, size: int) -> int:
    """scenedetect's own detection, then a separate 1 FPS sampling pass resized with PIL."""
    scenedetect.detect(str(path), scenedetect.AdaptiveDetector(), backend="pyav")
    kept, sampler = [], FirstFrameSampler(SAMPLING_FPS)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if sampler.keeps(frame.time):
                image = frame.to_image().resize((size, size), Image.Resampling.BICUBIC)
                kept.append(np.asarray(image))
    return len(kept)


QUESTION = "When does the box turn red?"


def make_processor(size: int = 384) -> SalovaProcessor:
    tokenizer = build_tiny_tokenizer()
    query_tokenizer = build_tiny_tokenizer(with_video_token=False)
    return SalovaProcessor(SalovaVideoProcessor(size={"height": size, "width": size}), tokenizer, query_tokenizer)


# `--flag`: (variant name, module, setting, value) of an ablation, the processor with one module setting changed.
ABLATIONS = {
    "parts_ablation": ("processor_one_pass", decode_parts, "MIN_PART_SECONDS", float("inf")),
}


def processor_with_setting(path: Path, processor: SalovaProcessor, module, setting: str, value):
    """The processor with `module.setting` (read at each call) set to `value` for this call only."""
    kept = getattr(module, setting)
    setattr(module, setting, value)
    try:
        return processor(videos=str(path), text=QUESTION, progress=False)
    finally:
        setattr(module, setting, kept)


def variants(path: Path, processor: SalovaProcessor, with_two_pass: bool, ablations: list[str]) -> dict:
    """Name -> a call returning what it produced, in the order they run within one repeat."""
    video_processor = processor.video_processor
    transform = video_processor.frame_transform()
    detector = video_processor.cut_detector

    calls = {
        "bare_decode": lambda: bare_decode(path),
        "bare_decode_one_thread": lambda: bare_decode(path, threads=1),
        "processor": lambda: processor(videos=str(path), text=QUESTION, progress=False),
        "decode_detect": lambda: decode_video(path, transform, cut_detector=detector(), progress=False),
    }
    for flag in ablations:
        name, module, setting, value = ABLATIONS[flag]
        calls[name] = lambda module=module, setting=setting, value=value: processor_with_setting(
            path, processor, module, setting, value
        )
    if with_two_pass:
        calls["two_pass"] = lambda: two_pass(path, video_processor.size["height"])
    return calls


# The stages of `stage_profile` that every frame goes through besides its decode.
DETECTION_STAGES = ("detection: downscale + YUV->BGR->HSV", "detection: score + adaptive rule")


def stage_profile(path: Path, processor: SalovaProcessor, decode_cpu_s: float) -> dict:
    """Where the processor's CPU time goes, stage by stage, each timed on its own in one streaming pass (CPU
    seconds of the calling thread): the detector's downscale and HSV conversion, its score and adaptive rule, the
    hand-off of a frame to the detection thread (both threads), the 1 FPS resize, and the rest of the processor
    (segments, normalised tensors, tokens) on an already decoded video; `decode_cpu_s` is the bare decode's (all
    FFmpeg threads), measured beside it."""
    video_processor = processor.video_processor
    detector, transform = video_processor.cut_detector(), video_processor.frame_transform()
    detection_image = score = resize = 0.0
    count, sampled, previous, sampler = 0, 0, None, FirstFrameSampler(SAMPLING_FPS)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame_rate = Fraction(stream.average_rate)
        for frame in container.decode(stream):
            start = time.thread_time()
            hsv = detector.detection_image(frame)
            middle = time.thread_time()
            detector.process_score(FrameStamp(float(frame.time), count, frame_rate), content_score(previous, hsv))
            detection_image += middle - start
            score += time.thread_time() - middle
            previous, count = hsv, count + 1
            if sampler.keeps(frame.time):
                start = time.thread_time()
                transform(frame, frame.rotation)
                resize += time.thread_time() - start
                sampled += 1
    hand_offs = 2000
    start = time.process_time()
    with DetectionThread(lambda item: None) as detection:
        for item in range(hand_offs):
            detection.submit(item)
    hand_off = (time.process_time() - start) / hand_offs * count
    decoded = decode_video(path, transform, cut_detector=video_processor.cut_detector(), progress=False)
    image_stage, score_stage = DETECTION_STAGES
    stages = {
        "decode (FFmpeg, all threads)": (decode_cpu_s, count),
        image_stage: (detection_image, count),
        score_stage: (score, count),
        "detection: hand-off to its thread": (hand_off, count),
        "1 FPS resize": (resize, sampled),
        "segments + tensors + tokens": (_rest_of_processor(processor, path, decoded), 1),
    }
    return {
        name: {"cpu_s": round(seconds, 4), "per_item_us": round(seconds / items * 1e6, 1), "items": items}
        for name, (seconds, items) in stages.items()
    }


def _rest_of_processor(processor: SalovaProcessor, path: Path, decoded, repeats: int = 5) -> float:
    """CPU seconds of a processor call whose decode returns `decoded` at once (median of `repeats`)."""
    real_decode = video_processing_module.decode_video
    video_processing_module.decode_video = lambda *args, **kwargs: decoded
    try:
        times = []
        for _ in range(repeats):
            start = time.thread_time()
            processor(videos=str(path), text=QUESTION, progress=False)
            times.append(time.thread_time() - start)
    finally:
        video_processing_module.decode_video = real_decode
    return statistics.median(times)


def measure(path: Path, processor: SalovaProcessor, repeats: int, with_two_pass: bool, ablations: list[str]) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.frames / stream.average_rate) if stream.frames else float(container.duration / 1e6)
        width, height, frames = stream.codec_context.width, stream.codec_context.height, stream.frames
        b_frames = bool(stream.codec_context.has_b_frames)
    calls = variants(path, processor, with_two_pass, ablations)
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    outputs = {}
    for _ in range(repeats):
        for name, call in calls.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = call()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    median = {name: statistics.median(values) for name, values in wall.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    bare, bare_cpu = median["bare_decode"], median_cpu["bare_decode"]
    cpu_by_stage = stage_profile(path, processor, bare_cpu)
    detection_cpu = sum(cpu_by_stage[stage]["cpu_s"] for stage in DETECTION_STAGES)
    row = {
        "video": path.name,
        "resolution": f"{width}x{height}",
        "frames": frames,
        "b_frames": b_frames,
        "duration_s": round(duration, 2),
        "segments": int(outputs["processor"]["segments_per_video"][0]),
        "repeats": repeats,
        "cores": usable_cores(),
        "wall_s": {name: _summary(values) for name, values in wall.items()},
        "cpu_s": {name: _summary(values) for name, values in cpu.items()},
        "over_bare_decode": {name: round(value / bare, 3) for name, value in median.items()},
        "cpu_over_bare_decode": {name: round(value / bare_cpu, 3) for name, value in median_cpu.items()},
        "processor_stages_s": {
            "decode (bare)": round(bare, 3),
            "decode loop + 1 FPS resize + scene detection": round(median["decode_detect"] - bare, 3),
            "segments + tensors + tokens": round(median["processor"] - median["decode_detect"], 3),
        },
        "processor_over_floor_s": round(median["processor"] - bare, 3),
        "processor_over_bare_decode_each_repeat": [
            round(processor_s / bare_s, 3)
            for processor_s, bare_s in zip(wall["processor"], wall["bare_decode"], strict=True)
        ],
        "processor_realtime_factor": round(duration / median["processor"], 1),
        "processor_cpu_by_stage": cpu_by_stage,
        "exact_cpu_floor_over_bare_cpu": round((median_cpu["bare_decode_one_thread"] + detection_cpu) / bare_cpu, 3),
    }
    return row


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def ensure_long_video(minutes: float, fps: int) -> Path:
    """The benchmark's long 1280x720 video with many cuts, written once (through a temporary name, so an
    interrupted run never leaves a truncated file behind) and reused."""
    long_video = RESULTS / f"long_{minutes:g}min_1280x720_{fps}fps.mp4"
    if not long_video.exists():
        print(f"writing {long_video.name} ...", flush=True)
        partial = long_video.with_suffix(".partial.mp4")
        write_video(partial, long_video_frames(minutes, fps, 1280, 720), fps=fps, crf=26)
        partial.rename(long_video)
    return long_video


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--two-pass", action="store_true", help="also time scenedetect + a second sampling pass")
    parser.add_argument(
        "--parts-ablation", action="store_true", help="also time the processor decoding in one pass instead of parts"
    )
    parser.add_argument("--real-clips-only", action="store_true", help="skip the long video")
    parser.add_argument("--cores", type=int, help="run on this many of the cores the process may use (all)")
    parser.add_argument("--output", type=Path, default=RESULTS / "processor_speed.json")
    args = parser.parse_args()
    if args.cores is not None:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--cores needs CPU affinity, which this system does not offer")
        allowed = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cores <= len(allowed):
            parser.error(f"--cores must be between 1 and the {len(allowed)} cores this process may use")
        os.sched_setaffinity(0, allowed[: args.cores])
    av.logging.set_level(av.logging.ERROR)
    RESULTS.mkdir(exist_ok=True)

    videos = sorted(REAL_VIDEOS.glob("*.mp4"))
    if not args.real_clips_only:
        videos.insert(0, ensure_long_video(args.minutes, args.fps))
    processor = make_processor()
    rows = []
    for path in videos:
        row = measure(path, processor, args.repeats, args.two_pass, [flag for flag in ABLATIONS if getattr(args, flag)])
        rows.append(row)
        ratios, cpu_ratios = row["over_bare_decode"], row["cpu_over_bare_decode"]
        spread = row["processor_over_bare_decode_each_repeat"]
        print(
            f"{row['video']:<34} {row['resolution']:>9} {row['duration_s']:>6.1f} s  segments {row['segments']:>3}  "
            f"bare {row['wall_s']['bare_decode']['median']:.2f} s  "
            f"processor {row['wall_s']['processor']['median']:.2f} s"
            f"  | processor/bare {ratios['processor']:.2f}x (repeats {min(spread):.2f}-{max(spread):.2f}, "
            f"CPU {cpu_ratios['processor']:.2f}x, CPU floor {row['exact_cpu_floor_over_bare_cpu']:.2f}x)",
            flush=True,
        )
        for name, _, setting, value in ABLATIONS.values():
            if name in ratios:
                print(
                    f"    {name} ({setting} = {value}) / bare {ratios[name]:.2f}x (CPU {cpu_ratios[name]:.2f}x; "
                    f"processor: {ratios['processor']:.2f}x)",
                    flush=True,
                )
        print(f"    stages (s): {row['processor_stages_s']}", flush=True)
        cpu_stages = {name: stage["cpu_s"] for name, stage in row["processor_cpu_by_stage"].items()}
        print(f"    processor CPU by stage (s): {cpu_stages}", flush=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Processor wall time against a bare decode (the floor) and against the two-pass way, side by side in one run.

For each video: (1) a bare PyAV decode of every frame, no conversion; (2) `SalovaProcessor(videos=..., text=...)`
with the 7B settings (SigLIP 384: one decode pass, AdaptiveDetector cuts, 1 FPS frames, segments, tensors);
(3) what a user would write otherwise: `scenedetect.detect(path, AdaptiveDetector())` and then a second PyAV pass
that keeps one frame per second and resizes it with PIL. The three run interleaved, `--repeats` times, and the
median of each is reported with the ratios and the processor's realtime factor (video seconds per wall second).

The long video is made here (default 10 min of 1280x720 at 24 FPS, a cut every 4-20 s, textured panning scenes
with a moving object) and cached in `benchmarks/results/`; the real clips come from `shared/data/real-videos/`.

    python benchmarks/processor_speed.py [--minutes 10] [--repeats 3]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import av
import numpy as np
import scenedetect
from PIL import Image
from salova.hub_configs import build_tiny_tokenizer
from salova.processing import SalovaProcessor, SalovaVideoProcessor

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


def bare_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def two_pass(path: Path, size: int) -> int:
    """scenedetect's own detection, then a separate 1 FPS sampling pass resized with PIL."""
    scenedetect.detect(str(path), scenedetect.AdaptiveDetector(), backend="pyav")
    kept, next_time = [], 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time + 1e-6 >= next_time:
                image = frame.to_image().resize((size, size), Image.Resampling.BICUBIC)
                kept.append(np.asarray(image))
                next_time = int(frame.time) + 1.0
    return len(kept)


def make_processor(size: int = 384) -> SalovaProcessor:
    tokenizer = build_tiny_tokenizer()
    query_tokenizer = build_tiny_tokenizer(with_video_token=False)
    return SalovaProcessor(SalovaVideoProcessor(size={"height": size, "width": size}), tokenizer, query_tokenizer)


def measure(path: Path, processor: SalovaProcessor, repeats: int) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.frames / stream.average_rate) if stream.frames else float(container.duration / 1e6)
        width, height = stream.codec_context.width, stream.codec_context.height
    timings = {"bare_decode": [], "processor": [], "two_pass": []}
    segments = None
    for _ in range(repeats):
        for name in timings:
            start = time.perf_counter()
            if name == "bare_decode":
                bare_decode(path)
            elif name == "processor":
                inputs = processor(videos=str(path), text="When does the box turn red?", progress=False)
                segments = int(inputs["segments_per_video"][0])
            else:
                two_pass(path, processor.image_size)
            timings[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "video": path.name,
        "resolution": f"{width}x{height}",
        "duration_s": round(duration, 2),
        "segments": segments,
        **{f"{name}_s": round(value, 3) for name, value in median.items()},
        "processor_over_bare_decode": round(median["processor"] / median["bare_decode"], 3),
        "processor_over_two_pass": round(median["processor"] / median["two_pass"], 3),
        "processor_realtime_factor": round(duration / median["processor"], 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    av.logging.set_level(av.logging.ERROR)
    RESULTS.mkdir(exist_ok=True)

    long_video = RESULTS / f"long_{args.minutes:g}min_1280x720_{args.fps}fps.mp4"
    if not long_video.exists():
        print(f"writing {long_video.name} ...", flush=True)
        write_video(long_video, long_video_frames(args.minutes, args.fps, 1280, 720), fps=args.fps, crf=26)
    videos = [long_video] + sorted(REAL_VIDEOS.glob("*.mp4"))
    processor = make_processor()
    rows = []
    for path in videos:
        row = measure(path, processor, args.repeats)
        rows.append(row)
        print(
            f"{row['video']:<36} {row['resolution']:>9} {row['duration_s']:>7.1f} s  segments {row['segments']:>3}  "
            f"bare {row['bare_decode_s']:.2f} s  processor {row['processor_s']:.2f} s  "
            f"two-pass {row['two_pass_s']:.2f} s"
            f"  | processor/bare {row['processor_over_bare_decode']:.2f}x  processor/two-pass "
            f"{row['processor_over_two_pass']:.2f}x  realtime {row['processor_realtime_factor']:.0f}x",
            flush=True,
        )
    (RESULTS / "processor_speed.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Training throughput with videos decoded in the main process against 1 and 2 DataLoader workers, in one run, and
the DataLoader workers (and CPU cores) one GPU needs to keep the 7B's stage-2 steps fed.

The tiny SALOVA trains stage 2 on the synthetic corpus (`training.synthetic_corpus`, videos of 6-10 scenes at
1 FPS) through the recipe's own trainer and collator; for each worker count the same rows (same sampler seed) go
through `--steps` optimizer steps after `--warmup` ones. Reported per setting: videos per second over the measured
steps and the fraction of step time spent waiting for the next batch (the rest is the forward and backward pass).

The 7B's stage-2 shape: per-device batch 4, videos of 1-10 minutes at 1 FPS, frames resized to 384 px (SigLIP).
Each real test clip, played over for `--clip-seconds` at its own size, goes through the 7B's video processor as the
collator calls it (segment boundaries given, as for rows with scenes; and none, the processor cutting scenes, as
for rows without), pinned to one core as a DataLoader worker with a core of its own runs; the median CPU seconds
of `--repeats` (wall seconds too, which other load on the machine inflates), over the video's length, give the
processing a second of video costs, the costliest clip counting. A worker builds whole batches, so `W` workers
keep a GPU step of `T` seconds fed when `W * T` covers one batch's processing: `W = ceil(batch seconds / T)`, for
the mean batch (four 5.5-minute videos; the DataLoader's prefetched batches absorb the spread) and the longest
(four 10-minute ones); cores per GPU are the mean's workers and the main process. `T` is an assumption
(`--step-seconds`, no GPU here); see `STEP_SECONDS`.
Results go to `benchmarks/results/data_loading.json`.

    python benchmarks/data_loading.py [--videos 8] [--steps 12] [--warmup 2] [--batch-size 2]
        [--clip-seconds 60] [--repeats 3] [--step-seconds 4 8 16] [--feed-only]
"""

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from salova.hub_configs import build_processor, build_salova, build_tiny_tokenizer
from salova.processing import SalovaProcessor
from salova.training.recipe import load_recipe
from salova.training.run import build_trainer
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus

RESULTS = Path(__file__).parent / "results"
REAL_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-videos"
WORKER_COUNTS = (0, 1, 2)
STAGE2_BATCH = 4
VIDEO_MINUTES = (1.0, 10.0)
# Assumed seconds of one 7B stage-2 step on one H100 (not measured: no GPU here). From a FLOP count: a batch of
# four 5.5-minute videos is 1,320 frames of 729 patches through the 0.4B SigLIP tower (which trains in stage 2)
# and about 16k tokens through the 7.6B LLM, each trained with activation checkpointing (4 passes' worth of
# 2 FLOPs a parameter a token): about 4e15 FLOPs, 8 s at 500 TFLOP/s (half of the H100's bf16 peak).
STEP_SECONDS = (4.0, 8.0, 16.0)


def measure(trainer, num_workers: int, steps: int, warmup: int) -> dict:
    """Times `warmup + steps` training steps drawing batches from a fresh DataLoader with `num_workers`."""
    trainer.args.dataloader_num_workers = num_workers
    loader = trainer.get_train_dataloader()
    model = trainer.model.train()
    batches = iter(loader)
    waiting = total = 0.0
    videos = 0
    for step in range(warmup + steps):
        start = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        trainer.training_step(model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        done = time.perf_counter()
        if step >= warmup:
            waiting += fetched - start
            total += done - start
            videos += len(batch["segments_per_video"])
    del batches
    return {"num_workers": num_workers, "videos_per_second": videos / total, "waiting_fraction": waiting / total}


def stage2_processor() -> SalovaProcessor:
    """The processor of the 7B's vision settings (SigLIP 384 px, 1 FPS, its segment limits: `SalovaConfig`'s
    defaults) with the tiny tokenizers, whose cost beside the video's is negligible."""
    from salova.modeling import SalovaConfig

    return build_processor(SalovaConfig(), build_tiny_tokenizer(), build_tiny_tokenizer(with_video_token=False))


def played_over(clip: Path, seconds: float, folder: Path) -> Path:
    """`clip` repeated to `seconds` at its own size and frame rate, written once."""
    import av

    from salova.video_writer import write_video

    path = folder / f"{clip.stem}_{seconds:g}s_native.mp4"
    if not path.is_file():
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        partial = path.with_suffix(".partial.mp4")
        repeats = math.ceil(seconds * fps / len(frames))
        write_video(partial, (frame for _ in range(repeats) for frame in frames), fps=fps)
        partial.rename(path)
    return path


def stage2_feed(clip_seconds: float, repeats: int, step_seconds: list[float]) -> dict:
    """Seconds of one-core processing per second of video, and the workers the 7B's stage-2 step needs (see the
    module docstring)."""
    import av

    processor = stage2_processor()
    folder = RESULTS / "data_loading_clips"
    folder.mkdir(parents=True, exist_ok=True)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clips = []
    try:
        for clip in sorted(REAL_CLIPS.glob("*.mp4")):
            video = played_over(clip, clip_seconds, folder)
            with av.open(str(video)) as container:
                stream = container.streams.video[0]
                duration = float(stream.duration * stream.time_base)
                size = f"{stream.width}x{stream.height}"
            timings = {}
            for name, boundaries in (("boundaries_given", [30.0]), ("segmenter", None)):
                seconds, cpu_seconds = [], []
                for _ in range(repeats):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    processor(videos=[str(video)], text=["<video>\nWhat happens?"], segment_boundaries=[boundaries])
                    seconds.append(time.perf_counter() - start)
                    cpu_seconds.append(time.process_time() - cpu_start)
                timings[name] = {
                    "wall_seconds_median": round(statistics.median(seconds), 3),
                    "wall_seconds_range": [round(min(seconds), 3), round(max(seconds), 3)],
                    "cpu_seconds_median": round(statistics.median(cpu_seconds), 3),
                    "cpu_seconds_range": [round(min(cpu_seconds), 3), round(max(cpu_seconds), 3)],
                    "per_video_second": round(statistics.median(cpu_seconds) / duration, 5),
                }
            clips.append({"clip": clip.name, "size": size, "video_seconds": round(duration, 2), **timings})
    finally:
        os.sched_setaffinity(0, allowed)
        torch.set_num_threads(torch_threads)
    # The costliest clip and path sizes the workers: a corpus of such videos needs at least that many.
    per_second = max(clip[name]["per_video_second"] for clip in clips for name in ("boundaries_given", "segmenter"))
    batches = {
        "mean": STAGE2_BATCH * 60 * sum(VIDEO_MINUTES) / 2 * per_second,
        "longest": STAGE2_BATCH * 60 * VIDEO_MINUTES[1] * per_second,
    }
    needs = [
        {
            "step_seconds": step,
            **{f"{batch}_batch_seconds": round(seconds, 2) for batch, seconds in batches.items()},
            **{f"workers_{batch}": math.ceil(seconds / step) for batch, seconds in batches.items()},
            "cores_per_gpu": math.ceil(batches["mean"] / step) + 1,
        }
        for step in step_seconds
    ]
    return {"clips": clips, "processing_seconds_per_video_second": per_second, "needs": needs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="synthetic stage-2 videos (8 questions each)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip-seconds", type=float, default=60.0, help="each real clip played over this long")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, nargs="+", default=list(STEP_SECONDS))
    parser.add_argument("--feed-only", action="store_true", help="skip the tiny model's training")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    report = {"settings": vars(args)}
    if not args.feed_only:
        report.update(train_with_workers(args))
    feed = stage2_feed(args.clip_seconds, args.repeats, args.step_seconds)
    print(f"7B stage 2 (batch {STAGE2_BATCH}, {VIDEO_MINUTES[0]:g}-{VIDEO_MINUTES[1]:g} min videos, 1 FPS, 384 px):")
    for clip in feed["clips"]:
        print(
            f"  {clip['clip']:>24} {clip['size']:>10}: {clip['boundaries_given']['per_video_second']:.4f} s "
            f"(boundaries given) / {clip['segmenter']['per_video_second']:.4f} s (segmenter) a second of video"
        )
    print(f"{'step':>8} {'mean batch':>11} {'workers':>8} {'longest':>9} {'workers':>8} {'cores/GPU':>10}")
    for need in feed["needs"]:
        print(
            f"{need['step_seconds']:>7g}s {need['mean_batch_seconds']:>10.1f}s {need['workers_mean']:>8} "
            f"{need['longest_batch_seconds']:>8.1f}s {need['workers_longest']:>8} {need['cores_per_gpu']:>10}"
        )
    report["stage2_feed"] = feed
    (RESULTS / "data_loading.json").write_text(json.dumps(report, indent=2))


def train_with_workers(args: argparse.Namespace) -> dict:
    """The tiny model's training throughput with each of `WORKER_COUNTS` DataLoader workers."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        corpus = generate_corpus(
            workdir / "corpus", CorpusSettings(stage1_clips=2, stage15_videos=1, stage2_videos=args.videos)
        )
        model, processor = build_salova("tiny", seed=0)
        model.save_pretrained(workdir / "model")
        processor.save_pretrained(workdir / "model")
        recipe = load_recipe(
            "2",
            {
                "model": str(workdir / "model"),
                "train_data": str(corpus["stage2"]),
                "output_dir": str(workdir / "out"),
                "training_args": {
                    "use_cpu": True,
                    "activation_checkpointing": False,
                    "report_to": [],
                    "per_device_train_batch_size": args.batch_size,
                    "gradient_accumulation_steps": 1,
                    "seed": 0,
                },
            },
        )
        trainer = build_trainer(recipe)
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1
        results = [measure(trainer, workers, args.steps, args.warmup) for workers in WORKER_COUNTS]
    baseline = results[0]["videos_per_second"]
    print(f"{'workers':>8} {'videos/s':>10} {'vs 0':>6} {'waiting':>8}")
    for result in results:
        result["speedup"] = result["videos_per_second"] / baseline
        print(
            f"{result['num_workers']:>8} {result['videos_per_second']:>10.2f} {result['speedup']:>5.2f}x "
            f"{result['waiting_fraction']:>8.1%}"
        )
    return {"cpu_threads": torch.get_num_threads(), "results": results}


if __name__ == "__main__":
    main()

"""Training throughput with videos decoded in the main process against 1 and 2 DataLoader workers, in one run.

The tiny SALOVA trains stage 2 on the synthetic corpus (`training.synthetic_corpus`, videos of 6-10 scenes at
1 FPS) through the recipe's own trainer and collator; for each worker count the same rows (same sampler seed) go
through `--steps` optimizer steps after `--warmup` ones. Reported per setting: videos per second over the measured
steps and the fraction of step time spent waiting for the next batch (the rest is the forward and backward pass).
Results go to `benchmarks/results/data_loading.json`.

    python benchmarks/data_loading.py [--videos 8] [--steps 12] [--warmup 2] [--batch-size 2]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from salova.hub_configs import build_salova
from salova.training.recipe import load_recipe
from salova.training.run import build_trainer
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus

RESULTS = Path(__file__).parent / "results"
WORKER_COUNTS = (0, 1, 2)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="synthetic stage-2 videos (8 questions each)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
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
    RESULTS.mkdir(exist_ok=True)
    report = {"settings": vars(args), "cpu_threads": torch.get_num_threads(), "results": results}
    (RESULTS / "data_loading.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

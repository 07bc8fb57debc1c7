"""The package's main job: train the tiny SALOVA through stages 1 -> 1.5 -> 2 on CPU and show that it learned.

It writes the synthetic corpus (`synthetic_corpus`), builds the tiny random model (`salova build --variant tiny`),
runs each stage with `train_stage` from the checkpoint the previous stage saved (the shipped stage recipes, with
the tiny setting's batch sizes, epochs and rates below), and evaluates the final checkpoint on held-out videos of
12-14 scenes: router recall@k of the asked scene and answer exact-match, against the same model with a random
router, once with each video segmented at its annotated scenes and once at the scenes the processor detects, as
`salova ask` segments it. It ends by answering the questions of one held-out video, printing the scenes with their
`HH:MM:SS` spans and router scores, and the time each phase took.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from salova.assistant import VideoAssistant, ask_with_index
from salova.evaluation.retrieval import SCENE_SOURCES, evaluate, random_router, summarise
from salova.hub_configs import build_salova
from salova.processing import format_timestamp

from .data import STAGES
from .recipe import StageRecipe, load_recipe
from .run import train_stage
from .synthetic_corpus import CorpusSettings, generate_corpus

CORPUS_FILES = {"1": "stage1", "1.5": "stage1_5", "2": "stage2"}
# The tiny model on 2 CPU cores: fp32, no activation checkpointing, no intermediate checkpoints.
CPU_TRAINING_ARGS = {
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "save_strategy": "no",
    "report_to": [],
    "logging_steps": 5,
    "disable_tqdm": True,
    "seed": 0,
    # One data-loader worker that lives through the epochs keeps the videos the collator cached (`VIDEO_CACHE_MB`).
    "dataloader_num_workers": 1,
    "dataloader_persistent_workers": True,
}
# The corpus's processed videos fit, so each is decoded once per stage rather than once per row and epoch.
VIDEO_CACHE_MB = 1024


@dataclass(frozen=True)
class EndToEndSettings:
    corpus: CorpusSettings = CorpusSettings(stage1_clips=2048, stage15_videos=16, stage2_videos=64, eval_videos=24)
    num_focus_segments: int = 1
    epochs: dict = field(default_factory=lambda: {"1": 7, "1.5": 5, "2": 12})
    batch_sizes: dict = field(default_factory=lambda: {"1": 16, "1.5": 4, "2": 8})
    learning_rates: dict = field(default_factory=lambda: {"1": 1e-3, "1.5": 1e-3, "2": 1e-3})
    tower_learning_rate: float = 3e-4
    # The recipe's stage 1 freezes the vision tower and the LLM, which in a real variant arrive pretrained: the
    # tower already sees shapes and the LLM already reads. The tiny ones are random, so here they learn both in
    # stage 1 with the connector.
    extra_trainable: dict = field(
        default_factory=lambda: {"1": ["model.vision_tower", "model.language_model", "lm_head"]}
    )
    # Stage 2's thousand or so questions would only pull the tower away from what stage 1 taught it to see, at twice
    # the cost of a step.
    extra_frozen: dict = field(default_factory=lambda: {"2": ["model.vision_tower"]})
    seed: int = 0

    def recipe(self, stage: str, model: str, train_data: str, output_dir: str) -> StageRecipe:
        """The shipped stage recipe with this setting's data, sizes, rates and extra trainable and frozen modules."""
        recipe = load_recipe(
            stage,
            {
                "model": model,
                "train_data": train_data,
                "output_dir": output_dir,
                "learning_rate": self.learning_rates[stage],
                "tower_learning_rate": None if stage == "1" else self.tower_learning_rate,
                "num_focus_segments": self.num_focus_segments,
                "video_cache_mb": VIDEO_CACHE_MB,
                "training_args": {
                    **CPU_TRAINING_ARGS,
                    "num_train_epochs": self.epochs[stage],
                    "per_device_train_batch_size": self.batch_sizes[stage],
                    "gradient_accumulation_steps": 1,
                    "warmup_steps": 0.05,
                    "seed": self.seed,
                },
            },
        )
        recipe.trainable = [*recipe.trainable, *self.extra_trainable.get(stage, [])]
        recipe.frozen = [*recipe.frozen, *self.extra_frozen.get(stage, [])]
        return recipe


# smoke: CI's check that the pipeline runs. default: the main job (README: its time and figures); it learns to
# retrieve, colours and motion, but its stage 1 is too short for shapes, which the tiny tower starts telling apart
# only after some 2000 steps. full: twice the clips, eight times the stage-1.5 videos and twice the questions.
SETTINGS = {
    "smoke": EndToEndSettings(
        corpus=CorpusSettings(stage1_clips=16, stage15_videos=4, stage2_videos=4, eval_videos=2),
        epochs={"1": 2, "1.5": 1, "2": 2},
    ),
    "default": EndToEndSettings(),
    "full": EndToEndSettings(
        corpus=CorpusSettings(stage1_clips=4096, stage15_videos=128, stage2_videos=128, eval_videos=32),
        epochs={"1": 8, "1.5": 5, "2": 6},
    ),
}


def run_end_to_end(
    workdir: str | Path, settings: EndToEndSettings = SETTINGS["default"], progress: bool = True
) -> dict:
    """Runs the whole pipeline in `workdir` and returns `{"learned": metrics, "random_router": metrics,
    "detected_scenes": {"learned", "random_router"}, ...}`."""
    workdir = Path(workdir)
    transformers.logging.set_verbosity_error()
    logging.getLogger("salova").setLevel(logging.WARNING)
    torch.manual_seed(settings.seed)
    # A core for the data-loader worker, the others for the model's threads: one thread more than the cores would
    # stall every operation at its barrier, waiting for the core the worker holds.
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - CPU_TRAINING_ARGS["dataloader_num_workers"]))
    timings = {}
    started = start = time.perf_counter()
    corpus = generate_corpus(workdir / "corpus", settings.corpus, progress=progress)
    timings["corpus"] = time.perf_counter() - start

    model, processor = build_salova("tiny", seed=settings.seed)
    checkpoint = workdir / "stage0"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    for stage in STAGES:
        start = time.perf_counter()
        output_dir = workdir / f"stage{stage.replace('.', '_')}"
        recipe = settings.recipe(stage, str(checkpoint), str(corpus[CORPUS_FILES[stage]]), str(output_dir))
        print(f"stage {stage}: training from {checkpoint.name} on {Path(recipe.train_data).name}", flush=True)
        checkpoint = train_stage(recipe)
        timings[f"stage {stage}"] = time.perf_counter() - start

    assistant = VideoAssistant.from_pretrained(checkpoint)
    results, metrics = {}, {}
    for scenes in SCENE_SOURCES:
        start = time.perf_counter()
        results[scenes] = evaluate(assistant, corpus["eval"], seed=settings.seed, progress=progress, scenes=scenes)
        with random_router(assistant.model):
            ablation = evaluate(assistant, corpus["eval"], seed=settings.seed, progress=progress, scenes=scenes)
        metrics[scenes] = {"learned": summarise(results[scenes]), "random_router": summarise(ablation)}
        timings[f"evaluation ({scenes} scenes)"] = time.perf_counter() - start
    report = {
        **metrics["annotated"],
        "detected_scenes": metrics["detected"],
        "num_focus_segments": settings.num_focus_segments,
        "checkpoint": str(checkpoint),
    }
    _print_report(report, results["annotated"])
    start = time.perf_counter()
    _ask_through_index(checkpoint, corpus["eval"], workdir / "video-index")
    timings["asking through the video index"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - started
    report["seconds"] = {name: round(value, 1) for name, value in timings.items()}
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    _print_timings(timings)
    return report


def _ask_through_index(checkpoint: Path, eval_file: Path, index_dir: Path) -> None:
    """Asks the questions of the first held-out video as a user would: the first builds its video index, the
    second is answered from it."""
    records = [json.loads(line) for line in Path(eval_file).read_text().splitlines()]
    video = records[0]["video"]
    questions = [record["conversations"][0]["content"] for record in records if record["video"] == video]
    print(f"\nasking {video} through its video index:")
    print("\n".join(ask_with_index(checkpoint, Path(eval_file).parent / video, questions[:2], index_dir)))


def _print_report(report: dict, results) -> None:
    print("\nheld-out videos:", report["learned"]["questions"], "questions")
    print(f"{'':34}" + "".join(f"{name:>12}" for name in report["learned"] if name != "questions"))
    for scenes, routers in (("annotated", report), ("detected", report["detected_scenes"])):
        for name in ("learned", "random_router"):
            values = "".join(f"{value:12.3f}" for key, value in routers[name].items() if key != "questions")
            print(f"{f'{name}, {scenes} scenes':34}{values}")
    video = results[0].id.rsplit("-q", 1)[0]
    for result in results:
        if not result.id.startswith(video):
            continue
        print(f"\nQ: {result.question}\nA: {result.answer!r} (reference {result.reference!r})")
        for scene in result.scenes:
            marks = ("focus " if scene.focus else "") + ("<- asked" if scene.index in result.asked_scenes else "")
            print(f"  scene {scene.index:2d} {scene.span}  score {scene.score:+.2f}  {marks}")


def _print_timings(timings: dict[str, float]) -> None:
    print("\ntime per phase:")
    for name, seconds in timings.items():
        print(f"  {name:32} {format_timestamp(seconds)}")

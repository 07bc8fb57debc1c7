"""Runs one stage: load the checkpoint, freeze, build rows and the trainer, train, save (and push) the result.

The checkpoint a stage writes is a Hub-format folder (weights, config with `auto_map`, remote code, processor), so
the next stage's `model` is that folder or the Hub id it was pushed to.
"""

import json
import logging
from pathlib import Path

import torch
from salova.hub_configs.builder import load_chat_template
from salova.training.collator import COUNT_KEYS, SalovaCollator
from salova.training.data import RowSettings
from salova.training.data_check import check_data, write_json
from salova.training.recipe import StageRecipe, freeze_for_stage
from salova.training.trainer import SalovaTrainer
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

# Written into output_dir when a stage ends, so that `--resume` of a finished run does nothing.
FINISHED_FILE = "training_finished.json"


def build_trainer(recipe: StageRecipe, **training_overrides) -> SalovaTrainer:
    """The stage's trainer, with the model frozen and configured as the recipe says."""
    args = recipe.sft_config(**training_overrides)
    if recipe.router_in_batch_negatives and args.per_device_train_batch_size < 2:
        raise ValueError(
            f"stage {recipe.stage}: router_in_batch_negatives needs per_device_train_batch_size >= 2 "
            f"(got {args.per_device_train_batch_size}): the other clips of a batch are the negatives."
        )
    model = AutoModelForImageTextToText.from_pretrained(recipe.model)
    processor = AutoProcessor.from_pretrained(recipe.model)
    recipe.apply_model_settings(model)
    processor.follow_model_config(model.config)
    counts = freeze_for_stage(model, recipe)
    logger.info("stage %s: %s trainable and %s frozen parameters", recipe.stage, counts["trainable"], counts["frozen"])
    settings = RowSettings(
        recipe.stage,
        processor.video_processor,
        label_thresholds=recipe.label_thresholds,
        max_queries_per_video=recipe.max_queries_per_video,
        seed=args.seed,
        max_sampled_frames=recipe.max_sampled_frames,
    )
    # The first process checks the data and caches the result; the others read it back.
    with args.main_process_first(desc="data check"):
        rows, report = check_data(
            recipe.train_data,
            settings,
            video_dir=recipe.video_dir,
            cache_dir=recipe.output_dir,
            num_proc=recipe.data_check_num_proc,
            strict=recipe.strict_data,
            show=args.process_index == 0,
        )
    chat_template = load_chat_template(recipe.chat_template) if recipe.chat_template else None
    trainer = SalovaTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=SalovaCollator(
            processor,
            chat_template,
            recipe.max_length,
            fallback_rows=rows,
            video_cache_mb=recipe.video_cache_mb,
        ),
        processing_class=processor,
        tower_learning_rate=recipe.tower_learning_rate,
        tower_modules=recipe.tower_modules,
    )
    trainer.data_report = report
    return trainer


def train_stage(recipe: StageRecipe, resume: bool | str = False, **training_overrides) -> Path:
    """Trains the stage and returns the folder of its final Hub-format checkpoint (`recipe.output_dir`).

    `resume=True` continues from the last complete `checkpoint-*` in `output_dir` (saying which, and which
    incomplete ones it passes over); a string names the checkpoint. Resuming a run that already finished does
    nothing.
    """
    checkpoint = None
    if resume:
        if resume is True and (Path(recipe.output_dir) / FINISHED_FILE).is_file():
            print(f"stage {recipe.stage}: {recipe.output_dir} holds a finished run; nothing to resume.")
            return Path(recipe.output_dir)
        checkpoint = last_complete_checkpoint(recipe.output_dir) if resume is True else resume
    trainer = build_trainer(recipe, **training_overrides)
    if trainer.is_world_process_zero():
        (Path(recipe.output_dir) / FINISHED_FILE).unlink(missing_ok=True)
    trainer.train(resume_from_checkpoint=checkpoint)
    # Rows replaced or trimmed on every process, summed (every process takes part).
    totals = torch.tensor([trainer.data_counts[key] for key in COUNT_KEYS], device=trainer.accelerator.device)
    totals = trainer.accelerator.reduce(totals, reduction="sum").tolist()
    counts = {key.removeprefix("data_"): int(total) for key, total in zip(COUNT_KEYS, totals, strict=True)}
    if trainer.is_world_process_zero():
        report = {**trainer.data_report, "training": counts}
        write_json(Path(recipe.output_dir) / "data_check.json", report)
    # The folder is complete before it is saved and pushed: `push_to_hub` saves the model, then uploads the folder
    # once (`save_model` would upload it too).
    if trainer.args.push_to_hub:
        trainer.push_to_hub(commit_message=f"SALOVA stage {recipe.stage}")
    else:
        trainer.save_model(recipe.output_dir)
    if trainer.is_world_process_zero():
        (Path(recipe.output_dir) / FINISHED_FILE).write_text(json.dumps({"global_step": trainer.state.global_step}))
        print(f"stage {recipe.stage}: rows replaced or trimmed during training: {counts}")
        print(f"stage {recipe.stage}: wrote {recipe.output_dir} (trained on {trainer.args.world_size} processes)")
    return Path(recipe.output_dir)


def last_complete_checkpoint(output_dir: str | Path) -> str:
    """The newest `checkpoint-N` whose save finished: the Trainer writes `trainer_state.json` last, so a run killed
    while saving leaves a folder without it, which resuming passes over (and says so)."""
    folders = [
        folder
        for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if folder.name.rsplit("-", 1)[1].isdigit()
    ]
    complete = [folder for folder in folders if (folder / "trainer_state.json").is_file()]
    if not complete:
        raise FileNotFoundError(f"--resume: no complete checkpoint-* folder in {output_dir} to resume from.")
    chosen = max(complete, key=lambda folder: int(folder.name.rsplit("-", 1)[1]))
    passed = sorted(folder.name for folder in folders if folder not in complete and _step(folder) > _step(chosen))
    print(f"--resume: from {chosen}" + (f", passing over the incomplete {', '.join(passed)}" if passed else ""))
    return str(chosen)


def _step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])

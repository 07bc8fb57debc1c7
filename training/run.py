"""Runs one stage: load the checkpoint, freeze, build rows and the trainer, train, save (and push) the result.

The checkpoint a stage writes is a Hub-format folder (weights, config with `auto_map`, remote code, processor), so
the next stage's `model` is that folder or the Hub id it was pushed to.
"""

import logging
from pathlib import Path

import datasets
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..hub_configs.builder import load_chat_template
from .collator import SalovaCollator
from .data import THRESHOLDS, load_rows
from .recipe import StageRecipe, freeze_for_stage
from .trainer import SalovaTrainer

logger = logging.getLogger(__name__)


def build_trainer(recipe: StageRecipe, **training_overrides) -> SalovaTrainer:
    """The stage's trainer, with the model frozen and configured as the recipe says."""
    args = recipe.sft_config(**training_overrides)
    if recipe.router_in_batch_negatives and args.per_device_train_batch_size < 2:
        raise ValueError(
            f"stage {recipe.stage}: router_in_batch_negatives needs per_device_train_batch_size >= 2 "
            f"(got {args.per_device_train_batch_size}): the other clips of a batch are the negatives."
        )
    if recipe.label_thresholds not in THRESHOLDS:
        raise ValueError(f"label_thresholds must be one of {sorted(THRESHOLDS)}, got {recipe.label_thresholds!r}.")
    model = AutoModelForImageTextToText.from_pretrained(recipe.model)
    processor = AutoProcessor.from_pretrained(recipe.model)
    recipe.apply_model_settings(model)
    if recipe.num_focus_segments is not None:
        processor.num_focus_segments = recipe.num_focus_segments
    counts = freeze_for_stage(model, recipe)
    logger.info("stage %s: %s trainable and %s frozen parameters", recipe.stage, counts["trainable"], counts["frozen"])
    rows = load_rows(
        recipe.train_data,
        recipe.stage,
        THRESHOLDS[recipe.label_thresholds],
        strict=recipe.strict_data,
        max_queries_per_video=recipe.max_queries_per_video,
    )
    chat_template = load_chat_template(recipe.chat_template) if recipe.chat_template else None
    return SalovaTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=SalovaCollator(processor, chat_template),
        processing_class=processor,
        tower_learning_rate=recipe.tower_learning_rate,
        tower_modules=recipe.tower_modules,
    )


def train_stage(recipe: StageRecipe, resume: bool | str = False, **training_overrides) -> Path:
    """Trains the stage and returns the folder of its final Hub-format checkpoint (`recipe.output_dir`).

    `resume=True` continues from the last `checkpoint-*` in `output_dir`; a string names the checkpoint.
    """
    trainer = build_trainer(recipe, **training_overrides)
    checkpoint = last_complete_checkpoint(recipe.output_dir) if resume is True else resume
    trainer.train(resume_from_checkpoint=checkpoint or None)
    trainer.save_model(recipe.output_dir)
    if trainer.args.push_to_hub:
        trainer.push_to_hub(commit_message=f"SALOVA stage {recipe.stage}")
    if trainer.is_world_process_zero():
        print(f"stage {recipe.stage}: wrote {recipe.output_dir} (trained on {trainer.args.world_size} processes)")
    return Path(recipe.output_dir)


def last_complete_checkpoint(output_dir: str | Path) -> str:
    """The newest `checkpoint-N` whose save finished: the Trainer writes `trainer_state.json` last, so a run killed
    while saving leaves a folder without it, which resuming must pass over."""
    complete = [
        folder
        for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if folder.name.rsplit("-", 1)[1].isdigit() and (folder / "trainer_state.json").is_file()
    ]
    if not complete:
        raise FileNotFoundError(f"--resume: no complete checkpoint-* folder in {output_dir} to resume from.")
    return str(max(complete, key=lambda folder: int(folder.name.rsplit("-", 1)[1])))

"""A stage recipe: which checkpoint and data, which parameters train at which rate, and the stage's SALOVA settings.

Each stage ships its defaults as a small JSON file in `training/stages/` (the paper's recipe, spec section 4). A
user's config file names the stage's inputs and overrides any default::

    {"model": "out/stage1", "train_data": "data/scenewalk.jsonl", "output_dir": "out/stage1_5",
     "training_args": {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}}

Keys:

- `model`: the checkpoint the stage starts from (folder or Hub id); `train_data`: a JSONL file of the stage's schema
  (`training.data`); `output_dir`: where checkpoints and the final Hub-format model go.
- `trainable`: parameter-name prefixes that train (`"*"`: all); `frozen`: prefixes then frozen again.
- `learning_rate`; `tower_learning_rate` for parameters under `tower_modules` (None: `learning_rate`).
- `max_token_drop`, `similarity_loss_weight`, `similarity_margin_loss`, `router_in_batch_negatives`,
  `num_focus_segments`: written into the model's config for the stage (and saved with its checkpoint); the
  processor follows the config (`SalovaProcessor.follow_model_config`).
- `chat_template`: a shipped template name (`plain` in stages 1 and 1.5), or None for the checkpoint's own.
- `train_data` may be JSON, JSONL, parquet, a `save_to_disk` folder or a Hub dataset id (`training.reading`);
  `video_dir`: the folder relative video paths resolve against (default: the annotation file's folder).
- `label_thresholds` (`code` | `paper`), `max_queries_per_video`, `max_sampled_frames` (the authors skipped videos
  over 1800 sampled frames; None: no skip), `strict_data` (any repair or skip of the data check is an error),
  `data_check_num_proc` (None: the machine's cores): how records become rows (`training.data_check`).
- `max_length`: LLM tokens per row (the paper's 8192), applied by the collator (`training.collator`).
- `video_cache_mb`: processed videos the collator keeps in memory for the later rows and epochs of the same video
  (0: none); with `dataloader_persistent_workers`, a corpus that fits is decoded once.
- `global_batch_size`: the paper's batch per optimizer step; unless `training_args` sets
  `gradient_accumulation_steps`, accumulation is `global_batch_size / (world size x per-device batch)`.
- `training_args`: any `trl.SFTConfig` field (batch size, accumulation, epochs, schedule, saving, `push_to_hub`,
  `hub_model_id`, `hub_strategy`, `bf16`, `gradient_checkpointing`, ...). `bf16` and an accelerate config's mixed
  precision are switched off, with a line saying so, on a machine without CUDA, where the processes of a
  multi-process launch train on CPU (`use_cpu`, with gloo): the shipped accelerate configs run there as they are;
  `dataloader_num_workers` defaults to the cores left beside the main one.
"""

import difflib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from salova.training.data import STAGE_FILES, RowSettings
from torch import nn
from trl import SFTConfig

# SFTConfig fields the recipe owns: the collator decodes videos itself and the trainer computes its own loss.
FIXED_TRAINING_ARGS = {
    "dataset_kwargs": {"skip_prepare_dataset": True},
    "remove_unused_columns": False,
    "max_length": None,
}
SFT_FIELDS = {f.name: f for f in fields(SFTConfig)}
MAX_DATALOADER_WORKERS = 4
TOWER_MODULES = ("model.vision_tower", "model.query_encoder")
MODEL_SETTINGS = (
    "max_token_drop",
    "similarity_loss_weight",
    "similarity_margin_loss",
    "router_in_batch_negatives",
    "num_focus_segments",
)


@dataclass
class StageRecipe:
    stage: str
    model: str
    train_data: str
    output_dir: str
    trainable: list[str]
    learning_rate: float
    max_token_drop: float
    similarity_loss_weight: float
    similarity_margin_loss: bool
    router_in_batch_negatives: bool
    frozen: list[str] = field(default_factory=list)
    tower_learning_rate: float | None = None
    tower_modules: list[str] = field(default_factory=lambda: list(TOWER_MODULES))
    num_focus_segments: int | None = None
    chat_template: str | None = None
    label_thresholds: str = RowSettings.label_thresholds
    max_queries_per_video: int = RowSettings.max_queries_per_video
    max_sampled_frames: int | None = None
    strict_data: bool = False
    data_check_num_proc: int | None = None
    video_dir: str | None = None
    max_length: int | None = 8192
    video_cache_mb: int = 0
    global_batch_size: int | None = None
    training_args: dict = field(default_factory=dict)

    def sft_config(self, world_size: int | None = None, **overrides) -> SFTConfig:
        """The stage's `SFTConfig`: `training_args` and `overrides`, the recipe's fixed fields, accumulation
        derived from `global_batch_size`, bf16 and the launch's mixed precision off without CUDA, the processes
        of a launch without CUDA on CPU (`use_cpu`) and data-loader workers by default."""
        args = {**self.training_args, **overrides}
        fixed = sorted(key for key in args if key in FIXED_TRAINING_ARGS)
        if fixed:
            raise ValueError(f"training_args may not set {fixed}: the stage recipe sets them.")
        for key in args:
            if key not in SFT_FIELDS:
                close = difflib.get_close_matches(key, SFT_FIELDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (see trl.SFTConfig)"
                raise ValueError(f"training_args: unknown key {key!r}{hint}")
        world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
        if args.get("bf16") and not torch.cuda.is_available():
            print(f"stage {self.stage}: no CUDA device, bf16 switched off (training in float32).")
            args["bf16"] = False
        if world_size > 1 and not torch.cuda.is_available() and "use_cpu" not in args:
            # Without it, each process of a launch without CUDA would train a model of its own.
            print(f"stage {self.stage}: no CUDA device, the {world_size} processes train on CPU (gloo).")
            args["use_cpu"] = True
        args.setdefault("dataloader_num_workers", min(MAX_DATALOADER_WORKERS, max(0, (os.cpu_count() or 1) - 1)))
        if "gradient_accumulation_steps" not in args and self.global_batch_size is not None:
            batch_size = args.get("per_device_train_batch_size", SFT_FIELDS["per_device_train_batch_size"].default)
            args["gradient_accumulation_steps"] = self.accumulation_steps(world_size, batch_size)
        config = SFTConfig(output_dir=self.output_dir, learning_rate=self.learning_rate, **FIXED_TRAINING_ARGS, **args)
        if not torch.cuda.is_available() and config.mixed_precision != "no":
            # An accelerate config's mixed precision (ACCELERATE_MIXED_PRECISION) would autocast on CPU.
            print(
                f"stage {self.stage}: no CUDA device, the launch's {config.mixed_precision} mixed precision "
                "switched off (training in float32)."
            )
            config.mixed_precision = "no"
        return config

    def accumulation_steps(self, world_size: int, per_device_batch_size: int) -> int:
        """`global_batch_size / (world_size x per_device_batch_size)`, which must be a whole number."""
        per_step = world_size * per_device_batch_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"stage {self.stage}: global_batch_size={self.global_batch_size} is not a multiple of {world_size} "
                f"processes x per_device_train_batch_size={per_device_batch_size} = {per_step}; change one of them "
                "or set training_args.gradient_accumulation_steps."
            )
        return self.global_batch_size // per_step

    def apply_model_settings(self, model) -> None:
        for name in MODEL_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                setattr(model.config, name, value)


def load_recipe(stage: str, config: str | Path | dict | None = None, **overrides) -> StageRecipe:
    """The stage's shipped defaults, updated by `config` (a JSON file or a dict), then by `overrides`.

    `training_args` dictionaries merge key by key. Unknown keys, a config written for another stage and missing
    inputs raise a `ValueError` naming them.
    """
    if stage not in STAGE_FILES:
        raise ValueError(f"stage must be one of {list(STAGE_FILES)}, got {stage!r}.")
    values = json.loads(STAGE_FILES[stage].read_text())
    source = "overrides"
    if isinstance(config, (str, Path)):
        source = str(config)
        if not Path(config).is_file():
            raise FileNotFoundError(f"Stage config not found: {config}")
        try:
            config = json.loads(Path(config).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error}).") from error
    for layer, name in ((config or {}, source), (overrides, "overrides")):
        unknown = set(layer) - {f.name for f in fields(StageRecipe)}
        if unknown:
            raise ValueError(f"{name}: unknown recipe keys {sorted(unknown)}; see `salova.training.recipe`.")
        if layer.get("stage", stage) != stage:
            raise ValueError(f"{name} is a stage {layer['stage']} config, but stage {stage} was asked for.")
        training_args = {**values.get("training_args", {}), **layer.get("training_args", {})}
        values.update(layer, training_args=training_args)
    missing = [key for key in ("model", "train_data", "output_dir") if not values.get(key)]
    if missing:
        raise ValueError(f"stage {stage}: the config must name {missing} (in the file or as command-line options).")
    return StageRecipe(**values)


def _matches(name: str, prefixes: list[str]) -> bool:
    return any(prefix == "*" or name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def freeze_for_stage(model: nn.Module, recipe: StageRecipe) -> dict[str, int]:
    """Sets `requires_grad` from the recipe's `trainable` and `frozen` prefixes; returns trainable/frozen counts.

    A prefix that names no parameter raises, so a typo never leaves a module silently frozen or trained.
    """
    names = [name for name, _ in model.named_parameters()]
    for prefix in [*recipe.trainable, *recipe.frozen, *recipe.tower_modules]:
        if prefix != "*" and not any(_matches(name, [prefix]) for name in names):
            raise ValueError(f"stage {recipe.stage}: the prefix {prefix!r} names no parameter of the model.")
    counts = {"trainable": 0, "frozen": 0}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = _matches(name, recipe.trainable) and not _matches(name, recipe.frozen)
        counts["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
    return counts


def parameter_groups(
    model: nn.Module,
    learning_rate: float,
    tower_learning_rate: float | None,
    tower_modules: list[str],
    weight_decay: float,
    decay_parameter_names: set[str],
) -> list[dict]:
    """AdamW groups of the trainable parameters: (towers | the rest) x (decayed | not), empty groups left out."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        tower = _matches(name, tower_modules)
        decay = name in decay_parameter_names
        group = groups.setdefault(
            (tower, decay),
            {
                "params": [],
                "lr": tower_learning_rate if tower and tower_learning_rate is not None else learning_rate,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{'towers' if tower else 'rest'}{'' if decay else '_no_decay'}",
            },
        )
        group["params"].append(parameter)
    return list(groups.values())

"""Stage recipes (alignment, long-video knowledge injection, instruction tuning) on TRL's SFTTrainer.

`reading` (JSON, JSONL, parquet, Hub sources), `data` (per-stage record schema, retrieval labels, scenes onto
segments), `data_check` (probe, repair or skip, report), `adapters` (LLaVA JSON and SceneWalk rows), `collator`
(videos decoded per batch, response-only LM labels), `trainer` (`L_ar + w · L_sim` in the optimised loss, tower and
non-tower learning rates, whole periodic pushes), `recipe` (stage config files, freezing), `run` and `cli`
(`salova-train`), `synthetic_corpus` and `end_to_end` (the tiny proof that the three stages learn to retrieve,
scored by `salova.evaluation.retrieval`).
"""

from .collator import SalovaCollator
from .data import THRESHOLDS, LabelThresholds, RecordError, RowSettings, record_row
from .data_check import check_data
from .reading import read_records
from .recipe import StageRecipe, freeze_for_stage, load_recipe
from .run import build_trainer, train_stage
from .trainer import SalovaTrainer

__all__ = [
    "THRESHOLDS",
    "LabelThresholds",
    "RecordError",
    "SalovaCollator",
    "SalovaTrainer",
    "StageRecipe",
    "RowSettings",
    "build_trainer",
    "check_data",
    "freeze_for_stage",
    "load_recipe",
    "read_records",
    "record_row",
    "train_stage",
]

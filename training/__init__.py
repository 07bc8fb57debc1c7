"""Stage recipes (alignment, long-video knowledge injection, instruction tuning) on TRL's SFTTrainer.

`data` (per-stage record schema and retrieval labels), `adapters` (LLaVA JSON and SceneWalk rows), `collator`
(videos decoded per batch, response-only LM labels), `trainer` (`L_ar + w · L_sim` in the optimised loss, tower and
non-tower learning rates, whole periodic pushes), `recipe` (stage config files, freezing), `run` and `cli`
(`salova-train`), `evaluation` (recall@k and exact-match against a random router), `synthetic_corpus` and
`end_to_end` (the tiny proof that the three stages learn to retrieve).
"""

from .collator import SalovaCollator
from .data import THRESHOLDS, LabelThresholds, RecordError, load_rows, training_rows
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
    "build_trainer",
    "freeze_for_stage",
    "load_recipe",
    "load_rows",
    "train_stage",
    "training_rows",
]

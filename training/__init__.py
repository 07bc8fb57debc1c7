"""Stage recipes (alignment, long-video knowledge injection, instruction tuning) on TRL's SFTTrainer.

So far: the per-stage record schema with retrieval labels (`data`), the collator with response-only LM labels
(`collator`) and `SalovaTrainer`, whose loss really holds `w · L_sim` (`trainer`). Stage configs, the
`salova-train` command and the end-to-end proof are tracked in issue 4.
"""

from .collator import SalovaCollator
from .data import THRESHOLDS, LabelThresholds, RecordError, load_rows, training_rows
from .trainer import SalovaTrainer

__all__ = [
    "THRESHOLDS",
    "LabelThresholds",
    "RecordError",
    "SalovaCollator",
    "SalovaTrainer",
    "load_rows",
    "training_rows",
]

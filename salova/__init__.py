"""SALOVA: Segment-Augmented LOng Video Assistant as a Hub-native transformers package.

Importing it registers the config, models and processor with the transformers Auto classes.
"""

from transformers import AutoProcessor

from .modeling import SalovaConfig, SalovaForConditionalGeneration, SalovaModel
from .processing import SalovaProcessor

AutoProcessor.register(SalovaConfig, SalovaProcessor, exist_ok=True)

__all__ = ["SalovaConfig", "SalovaForConditionalGeneration", "SalovaModel", "SalovaProcessor"]

"""SALOVA: Segment-Augmented LOng Video Assistant as a Hub-native transformers package.

Importing it registers the config, models and processor with the transformers Auto classes.
"""

from transformers import AutoProcessor
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING

from .modeling import SalovaConfig, SalovaForConditionalGeneration, SalovaModel
from .processing import SalovaProcessor, SalovaVideoProcessor

AutoProcessor.register(SalovaConfig, SalovaProcessor, exist_ok=True)
# What `AutoVideoProcessor.register` does; the class itself requires torchvision, which this package does without.
VIDEO_PROCESSOR_MAPPING.register(
    SalovaConfig, {"pil": SalovaVideoProcessor, "torchvision": SalovaVideoProcessor}, exist_ok=True
)

__all__ = ["SalovaConfig", "SalovaForConditionalGeneration", "SalovaModel", "SalovaProcessor"]

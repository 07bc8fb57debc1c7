"""SALOVA: Segment-Augmented LOng Video Assistant as a Hub-native transformers package."""

from .modeling import SalovaConfig, SalovaForConditionalGeneration, SalovaModel

__all__ = ["SalovaConfig", "SalovaForConditionalGeneration", "SalovaModel"]

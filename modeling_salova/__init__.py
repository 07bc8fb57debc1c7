# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""SALOVA model and config. Importing this package registers them with the transformers Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_salova import SalovaConfig
from .modeling_salova import SalovaForConditionalGeneration, SalovaModel, SalovaPreTrainedModel

AutoConfig.register(SalovaConfig.model_type, SalovaConfig, exist_ok=True)
AutoModel.register(SalovaConfig, SalovaModel, exist_ok=True)
AutoModelForImageTextToText.register(SalovaConfig, SalovaForConditionalGeneration, exist_ok=True)
# save_pretrained copies the files defining these classes (and their relative imports) next to the weights.
SalovaConfig.register_for_auto_class()
SalovaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = ["SalovaConfig", "SalovaModel", "SalovaForConditionalGeneration", "SalovaPreTrainedModel"]

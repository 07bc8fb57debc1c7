"""The `lmms_eval.models` entry point: lmms-eval reads this manifest at start-up and imports the model class
only when `--model salova` asks for it."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="salova", simple_class_path="salova.evaluation.lmms_eval_model.Salova")

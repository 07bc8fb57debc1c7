"""Evaluation of SALOVA checkpoints: long-video benchmark runners (Video-MME, LongVideoBench, MLVU), V-NIAH, and a
`salova` model for lmms-eval (`salova.evaluation.lmms_eval_model`, registered through the `lmms_eval.models`
entry point)."""

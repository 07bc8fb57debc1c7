"""Evaluation of SALOVA checkpoints, every answer through the answering core (`salova.assistant.VideoAssistant`):
long-video benchmark runners (Video-MME, LongVideoBench, MLVU), V-NIAH, held-out retrieval metrics (recall@k and
exact match against a random router, `retrieval`), and a `salova` model for lmms-eval
(`salova.evaluation.lmms_eval_model`, registered through the `lmms_eval.models` entry point)."""

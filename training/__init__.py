"""Stage recipes (alignment, long-video knowledge injection, instruction tuning) on TRL's SFTTrainer.

Nothing is exported yet: the three-stage pipeline is tracked as its own issue.
"""

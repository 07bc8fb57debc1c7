# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""Retrieval objective `L_sim`: point-wise BCE plus a score-margin term over sampled positive/negative pairs."""

import torch
import torch.nn.functional as F


def similarity_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    segment_mask: torch.Tensor,
    margin: float = 0.2,
    use_margin: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`L_sim = BCE-with-logits(s, y) + mean_j max(0, margin - (s_pos_j - s_neg_j))`.

    BCE averages over every real segment of the batch. For the margin term, each video with both positives
    (`y > 0.5`) and negatives draws `r` uniformly from `1..min(#pos, #neg)`, then `r` random positive and
    `r` random negative scores, paired in draw order; the hinge is averaged over all pairs of the batch.

    Args:
        scores: `(B, N)` router scores (logits). labels: `(B, N)` targets in [0, 1]. segment_mask: `(B, N)`.

    Returns:
        Scalar loss.
    """
    scores = scores.float()  # bf16 logits lose the margin term's 0.2 resolution
    bce = F.binary_cross_entropy_with_logits(scores[segment_mask], labels[segment_mask].float())
    if not use_margin:
        return bce
    hinges = []
    for video_scores, video_labels, video_mask in zip(scores, labels, segment_mask, strict=True):
        positive = (video_labels > 0.5) & video_mask
        negative = (video_labels <= 0.5) & video_mask
        max_pairs = int(min(positive.sum(), negative.sum()))
        if max_pairs == 0:
            continue
        num_pairs = int(torch.randint(1, max_pairs + 1, (), generator=generator))
        positive_scores = _sample(video_scores[positive], num_pairs, generator)
        negative_scores = _sample(video_scores[negative], num_pairs, generator)
        hinges.append((margin - (positive_scores - negative_scores)).clamp(min=0))
    if not hinges:
        return bce
    return bce + torch.cat(hinges).mean()


def _sample(values: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    return values[torch.randperm(values.shape[0], generator=generator, device="cpu")[:count].to(values.device)]

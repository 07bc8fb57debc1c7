"""Module semantics on hand-checkable cases: token drop, connector, router top-K, L_sim."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from salova.modeling.connector import SpatioTemporalConnector, dynamic_token_drop
from salova.modeling.losses import similarity_loss
from salova.modeling.router import SegmentRetrievalRouter, select_focus_segments


@pytest.mark.parametrize("longest", [50, 1960, 9000, 18000, 36000])
def test_token_drop_keeps_the_formula_count(longest):
    max_drop = 0.7
    tokens = torch.arange(longest, dtype=torch.float).repeat(3, 1).unsqueeze(-1)
    mask = torch.ones(3, longest, dtype=torch.bool)
    short = 40
    mask[2, short:] = False  # a segment shorter than the kept count keeps all its tokens
    kept, kept_mask = dynamic_token_drop(tokens, mask, max_drop, reference_length=18000)
    rate = max_drop * min(1.0, longest / 18000)
    expected = max(1, math.floor(longest * (1 - rate)))
    assert kept.shape[1] == expected
    assert kept_mask[0].sum() == kept_mask[1].sum() == expected
    assert kept_mask[2].sum() == min(short, expected)
    for row in range(2):  # a subset of the original tokens, in their original order
        values = kept[row, :, 0]
        assert torch.all(values[1:] > values[:-1]) and values.max() < longest


def test_token_drop_uses_the_batch_longest_when_given():
    tokens, mask = torch.randn(1, 100, 4), torch.ones(1, 100, dtype=torch.bool)
    kept, _ = dynamic_token_drop(tokens, mask, 0.5, reference_length=100, longest=150)
    assert kept.shape[1] == math.floor(150 * (1 - 0.5))  # rate and count follow the batch's L = 150
    kept, _ = dynamic_token_drop(tokens, mask, 0.5, reference_length=1000, longest=2000)
    assert kept.shape[1] == 100  # n = 1000 exceeds this slice: it keeps everything
    kept, _ = dynamic_token_drop(tokens, mask, 0.5, reference_length=1000)
    assert kept.shape[1] == math.floor(100 * (1 - 0.5 * 0.1))


@pytest.fixture
def connector(tiny):
    torch.manual_seed(0)
    model, _ = tiny
    return SpatioTemporalConnector(model.config), model.config


def test_connector_shapes_and_no_drop_in_eval(connector):
    module, config = connector
    frames = torch.randn(2, 5, config.tokens_per_frame, config.vision_hidden_size)
    summaries = torch.randn(2, 5, config.vision_hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    module.eval()
    plain = module(frames, summaries, mask)
    assert plain.shape == (2, 1 + config.connector_num_latents, config.hidden_width)
    assert torch.allclose(module(frames, summaries, mask, max_token_drop=0.9), plain)  # eval mode never drops
    module.train()
    dropped = module(frames, summaries, mask, max_token_drop=0.9, token_drop_reference_length=10)
    assert not torch.allclose(dropped, plain)


def test_connector_padding_does_not_leak(connector):
    module, config = connector
    module.eval()
    short = torch.randn(1, 2, config.tokens_per_frame, config.vision_hidden_size)
    long = torch.randn(1, 6, config.tokens_per_frame, config.vision_hidden_size)
    short_summary, long_summary = (
        torch.randn(1, 2, config.vision_hidden_size),
        torch.randn(1, 6, config.vision_hidden_size),
    )
    batch = torch.cat([F.pad(short, (0, 0, 0, 0, 0, 4), value=7.0), long])
    summaries = torch.cat([F.pad(short_summary, (0, 0, 0, 4), value=7.0), long_summary])
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1] * 6], dtype=torch.bool)
    alone = module(short, short_summary, torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(module(batch, summaries, mask)[0], alone[0], atol=1e-5)


def test_routing_token_starts_from_the_mean_frame_summary(connector):
    module, config = connector
    module.eval()
    frames = torch.randn(1, 3, config.tokens_per_frame, config.vision_hidden_size)
    summaries = torch.randn(1, 3, config.vision_hidden_size)
    mask = torch.ones(1, 3, dtype=torch.bool)
    shifted = summaries - summaries.mean(dim=1, keepdim=True) + 5.0  # same mean shift for every frame
    reference = module(frames, summaries, mask)
    assert not torch.allclose(module(frames, shifted, mask)[:, 0], reference[:, 0])
    permuted = summaries[:, [2, 0, 1]]  # only the mean matters
    assert torch.allclose(module(frames, permuted, mask), reference, atol=1e-5)


def test_connector_rejects_segments_longer_than_its_temporal_table(connector):
    module, config = connector
    frames = torch.randn(1, config.max_frames_per_segment + 1, 1, config.vision_hidden_size)
    summaries = torch.randn(1, frames.shape[1], config.vision_hidden_size)
    with pytest.raises(ValueError, match="max_frames_per_segment"):
        module(frames, summaries, torch.ones(1, frames.shape[1], dtype=torch.bool))


def test_top_k_is_returned_in_temporal_order():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2, 0.85]])
    mask = torch.ones_like(scores, dtype=torch.bool)
    assert select_focus_segments(scores, mask, 3).tolist() == [[1, 3, 5]]


def test_all_segments_are_used_when_there_are_at_most_k():
    scores = torch.tensor([[0.5, -0.2, 0.1, float("-inf")], [0.3, 0.2, 0.9, 0.1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert select_focus_segments(scores, mask, 5).tolist() == [[0, 1, 2, -1], [0, 1, 2, 3]]
    assert select_focus_segments(scores, mask, 3).tolist() == [[0, 1, 2], [0, 1, 2]]


def test_teacher_forcing_ranks_by_label_then_router_score():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.7, 0.0]])
    mask = torch.ones_like(scores, dtype=torch.bool)
    one_positive = torch.tensor([[0, 0, 0, 1, 0, 0.0]])  # fewer positives than K: router fills the rest
    assert select_focus_segments(scores, mask, 3, one_positive).tolist() == [[0, 1, 3]]
    many = torch.tensor([[0, 1, 1, 1, 0, 1.0]])  # more positives than K: best router scores among them
    assert select_focus_segments(scores, mask, 2, many).tolist() == [[1, 3]]
    graded = torch.tensor([[0.2, 0.3, 0.9, 0.8, 0.1, 0.95]])  # soft labels decide before the router
    assert select_focus_segments(scores, mask, 2, graded).tolist() == [[2, 5]]


@pytest.fixture
def router(tiny):
    torch.manual_seed(0)
    model, _ = tiny
    return SegmentRetrievalRouter(model.config).eval(), model.config


def test_router_scores_are_masked_and_padding_invariant(router):
    module, config = router
    width = config.hidden_width
    segments, text = torch.randn(2, 4, width), torch.randn(2, 5, width)
    segment_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5], dtype=torch.bool)
    scores = module(segments, segment_mask, text, text_mask)
    assert scores.shape == (2, 4) and torch.isinf(scores[0, 2:]).all() and torch.isfinite(scores[1]).all()
    alone = module(segments[:1, :2], segment_mask[:1, :2], text[:1, :3], text_mask[:1, :3])
    assert torch.allclose(scores[0, :2], alone[0], atol=1e-5)
    # Segments do not attend to each other: a segment's score ignores its neighbours.
    first_three = module(segments[1:, :3], segment_mask[1:, :3], text[1:], text_mask[1:])
    assert torch.allclose(scores[1, :3], first_three[0], atol=1e-5)
    bound = math.exp(config.router_logit_scale_init)  # scaled cosine
    assert scores[1].abs().max() <= bound + 1e-5


def test_router_rejects_more_segments_than_positions(router):
    module, config = router
    count = config.router_max_segments + 1
    with pytest.raises(ValueError, match="router_max_segments"):
        module(
            torch.randn(1, count, config.hidden_width),
            torch.ones(1, count, dtype=torch.bool),
            torch.randn(1, 3, config.hidden_width),
            torch.ones(1, 3, dtype=torch.bool),
        )


def test_similarity_loss_matches_hand_computation():
    scores = torch.tensor([[0.1, 0.05, 0.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    softplus = F.softplus
    bce = (
        softplus(torch.tensor(-0.1))
        + softplus(torch.tensor(0.05))
        + softplus(torch.tensor(1.0))
        + softplus(torch.tensor(-2.0))
    ) / 4
    # One positive and one negative per video: r = 1, the pairs are forced.
    hinge = (max(0.0, 0.2 - (0.1 - 0.05)) + max(0.0, 0.2 - (2.0 - 1.0))) / 2
    loss = similarity_loss(scores, labels, mask, margin=0.2)
    assert loss.item() == pytest.approx(bce.item() + hinge, abs=1e-6)
    assert similarity_loss(scores, labels, mask, use_margin=False).item() == pytest.approx(bce.item(), abs=1e-6)


def test_margin_term_samples_real_positive_negative_pairs():
    scores = torch.tensor([[0.3, 0.25, 0.0, 0.1]])
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    mask = torch.ones_like(labels, dtype=torch.bool)
    bce = F.binary_cross_entropy_with_logits(scores, labels).item()
    positives, negatives = [0.3, 0.25], [0.0, 0.1]
    possible = set()
    for r in (1, 2):  # every value the sampler can produce: means over r distinct positive/negative pairs
        for p in itertools.permutations(positives, r):
            for n in itertools.permutations(negatives, r):
                possible.add(round(bce + sum(max(0.0, 0.2 - (a - b)) for a, b in zip(p, n, strict=True)) / r, 6))
    seen = {
        round(similarity_loss(scores, labels, mask, generator=torch.Generator().manual_seed(s)).item(), 6)
        for s in range(40)
    }
    assert seen <= possible and len(seen) > 1

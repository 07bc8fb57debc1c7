"""SalovaForConditionalGeneration on the tiny variant: outputs, losses, gradients, bad input, generation."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import infer_auto_device_map
from conftest import make_batch
from salova.hub_configs.builder import load_variant
from salova.modeling import SalovaConfig, SalovaForConditionalGeneration
from salova.modeling.losses import similarity_loss

SEGMENTS = [[3, 1, 2, 4, 2, 1, 2], [2, 5]]  # 7 segments (more than K = 5) and 2 segments (fewer)


def test_forward_outputs(tiny):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    with torch.no_grad():
        out = model(**batch, segment_labels=torch.zeros(9))
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert out.router_scores.shape == (2, 7) and torch.isinf(out.router_scores[1, 2:]).all()
    assert out.selected_segments.shape == (2, 5)
    assert out.selected_segments[1].tolist() == [0, 1, -1, -1, -1]
    chosen = out.selected_segments[0]
    assert torch.equal(chosen, chosen.sort().values)
    assert set(chosen.tolist()) == set(out.router_scores[0].topk(5).indices.tolist())
    assert out.loss == pytest.approx((out.lm_loss + model.config.similarity_loss_weight * out.similarity_loss).item())


def test_batch_rows_match_the_rows_alone(tiny):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS, query_lengths=[6, 3], prompt_lengths=[5, 9])
    with torch.no_grad():
        together = model(**batch)
        for row, segments in enumerate(SEGMENTS):
            frames = sum(SEGMENTS[0]) if row else 0
            alone_batch = {
                "input_ids": batch["input_ids"][row : row + 1],
                "attention_mask": batch["attention_mask"][row : row + 1],
                "pixel_values_videos": batch["pixel_values_videos"][frames : frames + sum(segments)],
                "frames_per_segment": torch.tensor(segments),
                "segments_per_video": torch.tensor([len(segments)]),
                "query_input_ids": batch["query_input_ids"][row : row + 1],
                "query_attention_mask": batch["query_attention_mask"][row : row + 1],
            }
            alone = model(**alone_batch)
            valid = batch["attention_mask"][row].bool()
            assert torch.allclose(together.logits[row, valid], alone.logits[0, valid], atol=1e-4)
            n = len(segments)
            assert torch.allclose(together.router_scores[row, :n], alone.router_scores[0, :n], atol=1e-5)


def test_an_image_is_a_one_frame_video(tiny):
    model, _ = tiny
    batch = make_batch(model.config, [[1], [1]])
    assert (
        batch["input_ids"].eq(model.config.video_token_id).sum(1).tolist()
        == [model.config.connector_num_latents + 1] * 2
    )
    with torch.no_grad():
        out = model(**batch)
    assert out.selected_segments.tolist() == [[0], [0]] and torch.isfinite(out.logits).all()


def test_k_is_settable_per_call(tiny):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS, num_focus_segments=2)
    with torch.no_grad():
        out = model(**batch, num_focus_segments=2)
    assert out.selected_segments.shape == (2, 2)
    with pytest.raises(ValueError, match="placeholders"):
        model(**batch)  # the prompt was built for K = 2, the config says 5


def _bad(batch, **changes):
    return {**batch, **changes}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b, c: _bad(b, frames_per_segment=b["frames_per_segment"] + 1), "frames_per_segment sums to"),
        (
            lambda b, c: _bad(b, frames_per_segment=torch.tensor([3, 0, 3, 4, 2, 1, 2, 2, 5])),
            r"Segments \[1\] have no frame",
        ),
        (lambda b, c: _bad(b, segments_per_video=torch.tensor([6, 2])), "segments_per_video sums to"),
        (lambda b, c: _bad(b, query_input_ids=b["query_input_ids"][:1]), "query_input_ids has 1 rows"),
        (
            lambda b, c: _bad(b, input_ids=b["input_ids"].masked_fill(torch.arange(b["input_ids"].shape[1]) == 2, 11)),
            r"row 0: \d+ found",
        ),
        (
            lambda b, c: _bad(b, query_input_ids=torch.ones(2, 2049, dtype=torch.long), query_attention_mask=None),
            "text tower accepts 2048",
        ),
        (lambda b, c: _bad(b, query_input_ids=None), "without query_input_ids"),
        (lambda b, c: _bad(b, pixel_values_videos=b["pixel_values_videos"][None]), r"\(frames, 3, H, W\)"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny, mutate, message):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(**mutate(batch, model.config))


def test_more_segments_than_router_positions_is_rejected(tiny):
    model, _ = tiny
    count = model.config.router_max_segments + 1
    batch = make_batch(model.config, [[1] * count])
    with pytest.raises(ValueError, match=r"Video 0 has 257 segments; each video needs 1 to 256"), torch.no_grad():
        model(**batch)


def test_teacher_forcing_in_training_router_choice_in_eval(tiny):
    model = copy.deepcopy(tiny[0])
    batch = make_batch(model.config, SEGMENTS)
    labels = torch.zeros(9)
    labels[[0, 6]] = 1.0  # video 0: segments 0 and 6 are the ground truth
    model.train()
    with torch.no_grad():
        trained = model(**batch, segment_labels=labels)
    assert {0, 6} <= set(trained.selected_segments[0].tolist())
    model.eval()
    with torch.no_grad():
        evaluated = model(**batch, segment_labels=labels)
    expected = sorted(evaluated.router_scores[0].topk(5).indices.tolist())
    assert evaluated.selected_segments[0].tolist() == expected


def _grad_norms(model, loss, names):
    model.zero_grad()
    loss.backward(retain_graph=True)
    norms = {}
    for name in names:
        grads = [p.grad for p in getattr(model.model, name).parameters() if p.grad is not None]
        norms[name] = sum(g.abs().sum().item() for g in grads)
    return norms


def test_gradients_reach_router_connector_and_projector(tiny):
    model = copy.deepcopy(tiny[0]).train()
    batch = make_batch(model.config, SEGMENTS)
    labels = torch.zeros(9)
    labels[[2, 8]] = 1.0
    out = model(**batch, segment_labels=labels)
    from_similarity = _grad_norms(model, out.similarity_loss, ["router", "connector", "query_projection", "projector"])
    assert (
        from_similarity["router"] > 0 and from_similarity["connector"] > 0 and from_similarity["query_projection"] > 0
    )
    assert from_similarity["projector"] == 0  # L_sim is computed before the projector
    from_lm = _grad_norms(model, out.lm_loss, ["connector", "projector", "router"])
    assert from_lm["connector"] > 0 and from_lm["projector"] > 0
    assert from_lm["router"] == 0  # hard top-K: only L_sim trains the router


def test_in_batch_negatives_score_every_query_against_every_clip(tiny):
    model = copy.deepcopy(tiny[0]).train()
    model.config.router_in_batch_negatives = True
    batch = make_batch(model.config, [[3], [2], [4]])
    out = model(**batch)
    assert out.similarity_loss is not None and out.similarity_loss.item() > 0
    model.eval()
    with torch.no_grad():
        video = model.get_video_features(batch["pixel_values_videos"], batch["frames_per_segment"])
        features = model.route_segments(
            video.last_hidden_state,
            video.pooler_output,
            batch["segments_per_video"],
            batch["query_input_ids"],
            batch["query_attention_mask"],
        )
        matrix = model.model.in_batch_scores(features.routing_tokens, features.query_states, features.query_mask)
    assert matrix.shape == (3, 3)
    assert torch.allclose(matrix.diagonal(), features.router_scores[:, 0], atol=1e-5)


def test_vision_chunk_size_does_not_change_features(tiny):
    model = copy.deepcopy(tiny[0])
    pixels = torch.randn(11, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    with torch.no_grad():
        model.config.vision_chunk_size = 64
        whole, whole_summaries, _ = model.model.encode_frames(pixels)
        model.config.vision_chunk_size = 3
        chunked, chunked_summaries, _ = model.model.encode_frames(pixels)
    assert whole.shape == (11, model.config.tokens_per_frame, model.config.vision_hidden_size)
    assert whole_summaries.shape == (11, model.config.vision_hidden_size)
    assert torch.allclose(whole, chunked, atol=1e-5) and torch.allclose(whole_summaries, chunked_summaries, atol=1e-5)


def test_frame_features_come_from_the_penultimate_layer(tiny):
    model, _ = tiny
    config = model.config
    tower = model.model.vision_tower
    assert len(tower.encoder.layers) == config.vision_config.num_hidden_layers - 1
    full = type(tower)._from_config(config.vision_config).eval()
    full.load_state_dict(tower.state_dict(), strict=False)
    pixels = torch.randn(2, 3, config.vision_config.image_size, config.vision_config.image_size)
    with torch.no_grad():
        penultimate = full(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        tokens, summaries, _ = model.model.encode_frames(pixels)
    assert torch.allclose(summaries, penultimate.mean(dim=1), atol=1e-5)  # SigLIP: mean of the raw patches
    assert torch.allclose(tokens, model.model._pool_patches(penultimate), atol=1e-5)


def test_every_trainable_parameter_gets_a_gradient(tiny):
    """Stage 2 trains everything; DDP rejects parameters that never receive a gradient."""
    model = copy.deepcopy(tiny[0]).train()
    batch = make_batch(model.config, SEGMENTS)
    out = model(**batch, segment_labels=torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0, 1]))
    out.loss.backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def _router_targets(batch) -> dict:
    """Targets for the first row's query (the second row has none) and three extra queries: two about video 1,
    one about video 0, each with its own positive segment."""
    query_labels = torch.zeros(2, 7)
    query_labels[0, [2, 5]] = 1.0
    extra_labels = torch.zeros(3, 7)
    extra_labels[[0, 1, 2], [1, 4, 0]] = 1.0
    extra_ids = torch.randint(
        10, 400, (3, batch["query_input_ids"].shape[1]), generator=torch.Generator().manual_seed(1)
    )
    return {
        "query_labels": query_labels,
        "query_label_mask": torch.tensor([True, False]),
        "extra_query_input_ids": extra_ids,
        "extra_query_attention_mask": torch.ones_like(extra_ids),
        "extra_query_rows": torch.tensor([1, 0, 1]),
        "extra_query_labels": extra_labels,
    }


def test_similarity_loss_covers_every_labelled_query(tiny):
    """Each extra query is scored as its video's row scores its own query, against the same encoding; a row without
    labels takes no part; the margin pairs are drawn over all of them in that order."""
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    targets = _router_targets(batch)
    with torch.no_grad():
        out = model(**batch, **targets)
        scores = [out.router_scores[0]]
        for query, row in zip(targets["extra_query_input_ids"], targets["extra_query_rows"].tolist(), strict=True):
            as_own_query = batch["query_input_ids"].clone()
            as_own_query[row] = query
            scores.append(model(**{**batch, "query_input_ids": as_own_query}).router_scores[row])
    scores = torch.stack(scores)
    labels = torch.cat([targets["query_labels"][:1], targets["extra_query_labels"]])
    expected = similarity_loss(
        scores,
        labels,
        scores.isfinite(),
        margin=model.config.similarity_margin,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.similarity_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(
        out.lm_loss.item() + model.config.similarity_loss_weight * expected.item(), rel=1e-5
    )


def test_the_loss_of_one_micro_batch_of_a_step(tiny):
    """With `num_items_in_batch` the LM part is this batch's token sum over the step's tokens, and `L_sim` (a mean
    per micro-batch) is divided by the step's micro-batches."""
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    targets = _router_targets(batch)
    num_tokens = int((batch["labels"][:, 1:] != -100).sum())
    with torch.no_grad():
        alone = model(**batch, **targets)
        part = model(**batch, **targets, num_items_in_batch=torch.tensor(3 * num_tokens), num_micro_batches=4)
    weight = model.config.similarity_loss_weight
    expected = alone.lm_loss.item() / 3 + weight * alone.similarity_loss.item() / 4
    assert part.loss.item() == pytest.approx(expected, rel=1e-5)
    assert (part.lm_loss, part.similarity_loss) == (alone.lm_loss, alone.similarity_loss)


def test_a_batch_without_router_labels_still_routes_through_the_loss(tiny):
    """Its routing path joins the loss with zero weight: the same parameters get a gradient in every batch, as
    distributed engines need (DDP without an unused-parameter search, FSDP, ZeRO)."""
    model = copy.deepcopy(tiny[0]).train()
    batch = make_batch(model.config, SEGMENTS)
    out = model(**batch)
    assert out.similarity_loss is None and out.loss.item() == out.lm_loss.item()
    out.loss.backward()
    routing = [*model.model.router.parameters(), *model.model.query_projection.parameters()]
    assert all(p.grad is not None and not p.grad.any() for p in routing)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"query_labels": torch.zeros(2, 6)}, r"query_labels must be \(B, N_max\) = \(2, 7\)"),
        ({"query_label_mask": torch.tensor([True])}, r"query_label_mask must be \(2,\)"),
        ({"extra_query_rows": torch.tensor([1, 2, 0])}, r"extra_query_rows must be \(Q,\) row indices in \[0, 2\)"),
        ({"extra_query_labels": torch.zeros(3, 9)}, r"extra_query_labels must be \(Q, N_max\) = \(3, 7\)"),
        ({"extra_query_labels": None}, "Extra queries were given without extra_query_labels"),
        ({"extra_query_input_ids": torch.ones(2, 6, dtype=torch.long)}, "extra_query_input_ids has 2 queries"),
    ],
)
def test_bad_router_targets_get_a_clear_error(tiny, changes, message):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    targets = {**_router_targets(batch), **changes}
    if changes.get("extra_query_input_ids") is not None:
        targets["extra_query_attention_mask"] = None
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(**batch, **targets)


def test_generate_consumes_the_video_at_prefill_only(tiny):
    model, processor = tiny
    batch = make_batch(model.config, [[2, 3, 1]])
    batch.pop("labels")
    calls = []
    original = model.model.encode_frames
    model.model.encode_frames = lambda pixels, *a: calls.append(len(pixels)) or original(pixels, *a)  # noqa: B023
    try:
        with torch.no_grad():
            cached = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6)
            assert calls == [6]
            uncached = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6, use_cache=False)
    finally:
        model.model.encode_frames = original
    assert cached.shape == (1, batch["input_ids"].shape[1] + 6)
    assert torch.equal(cached, uncached)


def test_gradient_checkpointing_train_step(tiny):
    model = copy.deepcopy(tiny[0]).train()
    model.activation_checkpointing_enable()
    assert (
        model.model.connector.layers[0].gradient_checkpointing and model.model.router.layers[0].gradient_checkpointing
    )
    batch = make_batch(model.config, SEGMENTS)
    out = model(**batch, segment_labels=torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0, 1]))
    out.loss.backward()
    assert model.model.router.logit_scale.grad is not None


def test_bfloat16_forward(tiny):
    model = copy.deepcopy(tiny[0]).to(torch.bfloat16)
    batch = make_batch(model.config, SEGMENTS)
    batch["pixel_values_videos"] = batch["pixel_values_videos"].to(torch.bfloat16)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()


def test_device_map_keeps_blocks_whole(tiny):
    model, _ = tiny
    no_split = model._no_split_modules
    assert {"SpatioTemporalConnector", "SegmentRetrievalRouter", "Qwen2DecoderLayer", "SiglipEncoderLayer"} <= set(
        no_split
    )
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    device_map = infer_auto_device_map(
        model, max_memory={0: size // 3, 1: size // 3, "cpu": size * 2}, no_split_module_classes=list(no_split)
    )
    for module_name in ("model.connector", "model.router"):
        placed = {
            device for name, device in device_map.items() if name == module_name or name.startswith(module_name + ".")
        }
        parent_placed = any(module_name.startswith(name + ".") for name in device_map)
        assert len(placed) == 1 or (not placed and parent_placed)
        assert not any(name.startswith(module_name + ".") for name in device_map)


def test_attention_implementation_is_chosen_per_sub_config(tiny):
    model, _ = tiny
    assert model.model.language_model.config._attn_implementation == "sdpa"  # the default
    mixed = type(model)._from_config(model.config, attn_implementation={"text_config": "eager", "tower_config": "sdpa"})
    assert mixed.model.language_model.config._attn_implementation == "eager"
    assert mixed.model.vision_tower.config._attn_implementation == "sdpa"
    assert mixed.model.query_encoder.config._attn_implementation == "sdpa"
    mixed.load_state_dict(model.state_dict())
    batch = make_batch(model.config, [[2, 1]])
    with torch.no_grad():
        assert torch.allclose(mixed.eval()(**batch).logits, model(**batch).logits, atol=1e-4)


def test_beam_search_repeats_whole_videos(tiny):
    model, _ = tiny
    batch = make_batch(model.config, [[2, 3], [1]])
    batch.pop("labels")
    input_ids, expanded = model._expand_inputs_for_generation(expand_size=2, **dict(batch))
    pixels = batch["pixel_values_videos"]
    assert torch.equal(expanded["pixel_values_videos"], torch.cat([pixels[:5], pixels[:5], pixels[5:], pixels[5:]]))
    assert expanded["frames_per_segment"].tolist() == [2, 3, 2, 3, 1, 1]
    assert expanded["segments_per_video"].tolist() == [2, 2, 1, 1]
    assert torch.equal(input_ids, batch["input_ids"].repeat_interleave(2, dim=0))
    with torch.no_grad():
        beams = model.generate(**batch, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 4


def test_connector_initialisation_is_fan_in_scaled_with_unit_position_tables(tiny):
    """A fixed std of 0.02 leaves a tiny-width connector blind to its media, and the gain on queries and keys lets
    its latents start on a few positions (benchmarks/connector_learnability.py)."""
    config, connector = tiny[0].config, tiny[0].model.connector
    gain = config.connector_attention_init_gain
    assert gain > 1
    for table in (connector.spatial_embedding, connector.temporal_embedding):
        assert abs(table.std().item() - config.connector_position_init_std) < 0.1 * config.connector_position_init_std
    for name, linear in ((n, m) for n, m in connector.named_modules() if isinstance(m, torch.nn.Linear)):
        expected = (3 * linear.in_features) ** -0.5  # nn.Linear's default, uniform in +-1/sqrt(fan_in)
        if name.endswith("to_kv"):
            keys, values = linear.weight.chunk(2)
            assert abs(keys.std().item() - gain * expected) < 0.15 * gain * expected
            assert abs(values.std().item() - expected) < 0.15 * expected
        else:
            scale = gain if name.endswith("to_q") else 1.0
            assert abs(linear.weight.std().item() - scale * expected) < 0.15 * scale * expected
    # The rest of the model takes the text config's `initializer_range` (the tiny variant's fan-in std at width 64).
    std = config.text_config.initializer_range
    assert std == 0.125 and abs(tiny[0].model.projector[0].weight.std().item() - std) < 0.2 * std


def test_get_video_features_is_the_question_independent_half(tiny):
    model, _ = tiny
    config = model.config
    batch = make_batch(config, SEGMENTS)
    with torch.no_grad():
        features = model.get_video_features(batch["pixel_values_videos"], batch["frames_per_segment"])
        as_tuple = model.get_video_features(
            batch["pixel_values_videos"], batch["frames_per_segment"], return_dict=False
        )
        with_tower = model.get_video_features(
            batch["pixel_values_videos"], batch["frames_per_segment"], output_hidden_states=True
        )
    assert features.last_hidden_state.shape == (9, config.connector_num_latents, config.hidden_width)
    assert features.pooler_output.shape == (9, config.hidden_width)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], features.last_hidden_state)
    kept_layers = len(model.model.vision_tower.encoder.layers)
    assert len(with_tower.hidden_states) == kept_layers + 1
    assert with_tower.hidden_states[0].shape[0] == len(batch["pixel_values_videos"])
    assert torch.equal(with_tower.last_hidden_state, features.last_hidden_state)


def _stored_video_batch(model, batch):
    """The batch with the pixels replaced by what get_video_features returned (as a video index stores it)."""
    with torch.no_grad():
        features = model.get_video_features(batch["pixel_values_videos"], batch["frames_per_segment"])
    stored = {k: v for k, v in batch.items() if k not in ("pixel_values_videos", "frames_per_segment", "labels")}
    return {**stored, "video_latents": features.last_hidden_state, "video_routing_tokens": features.pooler_output}


def test_stored_video_features_answer_like_the_pixels(tiny):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    batch.pop("labels")
    stored = _stored_video_batch(model, batch)
    with torch.no_grad():
        from_pixels = model(**batch)
        from_store = model(**stored)
        greedy_pixels = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
        greedy_store = model.generate(**stored, max_new_tokens=5, min_new_tokens=5, do_sample=False)
        beams_pixels = model.generate(**batch, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
        beams_store = model.generate(**stored, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
    assert torch.equal(from_pixels.selected_segments, from_store.selected_segments)
    finite = torch.isfinite(from_pixels.router_scores)
    assert torch.allclose(from_pixels.router_scores[finite], from_store.router_scores[finite], atol=1e-6, rtol=0)
    assert torch.equal(greedy_pixels, greedy_store)
    assert torch.equal(beams_pixels, beams_store)


def test_beam_search_repeats_stored_video_features_by_whole_video(tiny):
    model, _ = tiny
    batch = make_batch(model.config, [[2, 3], [1]])
    stored = _stored_video_batch(model, batch)
    _, expanded = model._expand_inputs_for_generation(expand_size=2, **dict(stored))
    latents = stored["video_latents"]
    assert torch.equal(expanded["video_latents"], torch.cat([latents[:2], latents[:2], latents[2:], latents[2:]]))
    routing = stored["video_routing_tokens"]
    assert torch.equal(
        expanded["video_routing_tokens"], torch.cat([routing[:2], routing[:2], routing[2:], routing[2:]])
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"video_routing_tokens": None}, "video_latents was given without video_routing_tokens"),
        ({"video_latents": "drop-a-latent"}, r"video_latents must have shape \(S, 8, 32\)"),
        ({"pixel_values_videos": "pixels"}, "not both"),
    ],
)
def test_stored_video_features_bad_input(tiny, changes, message):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    stored = _stored_video_batch(model, batch)
    if changes.get("video_latents") == "drop-a-latent":
        changes = {"video_latents": stored["video_latents"][:, 1:]}
    if changes.get("pixel_values_videos") == "pixels":
        changes = {
            "pixel_values_videos": batch["pixel_values_videos"],
            "frames_per_segment": batch["frames_per_segment"],
        }
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(**{**stored, **changes})


def test_generate_without_the_video_is_refused(tiny):
    model, _ = tiny
    batch = make_batch(model.config, [[2, 1]])
    with pytest.raises(ValueError, match="video placeholders .* but no video was given"):
        model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=2)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    with pytest.raises(ValueError, match="but no video was given"):
        model.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=2)


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_num_focus_segments_must_be_a_positive_integer(tiny, k):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS)
    with pytest.raises(ValueError, match="num_focus_segments must be an integer >= 1"), torch.no_grad():
        model(**batch, num_focus_segments=k)


def test_evaluation_loss_is_reproducible(tiny):
    """The margin term of L_sim samples its pairs; in evaluation the draws are fixed, in training they are not."""
    model = copy.deepcopy(tiny[0])
    batch = make_batch(model.config, [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    labels = torch.tensor([1.0, 1, 1, 0, 0, 0] * 2)
    with torch.no_grad():
        evaluated = {model(**batch, segment_labels=labels).similarity_loss.item() for _ in range(6)}
        model.train()
        trained = {model(**batch, segment_labels=labels).similarity_loss.item() for _ in range(6)}
    assert len(evaluated) == 1 and len(trained) > 1


def test_router_temperature_is_clamped_at_100(tiny):
    model = copy.deepcopy(tiny[0])
    assert model.config.router_logit_scale_max == pytest.approx(math.log(100))
    with torch.no_grad():
        model.model.router.logit_scale.fill_(10.0)  # exp(10) ~ 22026 unclamped
        scores = model(**make_batch(model.config, SEGMENTS)).router_scores
    assert scores[scores.isfinite()].abs().max() <= 100 + 1e-4


TINY_CLIP_TOWER = {
    "model_type": "clip",
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 56,
        "patch_size": 8,
    },
    "text_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 2048,
    },
}


def _tiny_clip(tiny_config, **settings):
    data = {**tiny_config.to_dict(), "tower_config": TINY_CLIP_TOWER, **settings}
    data.pop("vision_frame_summary", None)
    if "vision_frame_summary" in settings:
        data["vision_frame_summary"] = settings["vision_frame_summary"]
    torch.manual_seed(0)
    return SalovaForConditionalGeneration(SalovaConfig.from_dict(data)).eval()


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "class_token"), ("class_token", "class_token"), ("patch_mean", "patch_mean")]
)
def test_frame_summary_is_a_setting(tiny, setting, expected):
    settings = {} if setting is None else {"vision_frame_summary": setting}
    model = _tiny_clip(tiny[0].config, **settings)
    assert model.config.frame_summary == expected
    pixels = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        hidden = model.model.vision_tower(pixel_values=pixels).last_hidden_state
        _, summaries, _ = model.model.encode_frames(pixels)
    wanted = hidden[:, 0] if expected == "class_token" else hidden[:, 1:].mean(dim=1)
    assert torch.allclose(summaries, wanted, atol=1e-6)


def test_class_token_summary_needs_a_tower_with_one(tiny):
    with pytest.raises(ValueError, match="vision_frame_summary='class_token' needs a tower with a class token"):
        SalovaConfig.from_dict({**tiny[0].config.to_dict(), "vision_frame_summary": "class_token"})
    with pytest.raises(ValueError, match="vision_frame_summary must be one of"):
        SalovaConfig.from_dict({**tiny[0].config.to_dict(), "vision_frame_summary": "cls"})


def test_new_clip_builds_use_the_patch_mean():
    for variant in ("3b", "3.8b"):
        assert load_variant(variant)["settings"]["vision_frame_summary"] == "patch_mean"


def test_clip_checkpoint_saved_without_the_setting_answers_the_same(tiny, tmp_path):
    """A config.json written before `vision_frame_summary` existed keeps the class-token summary it trained with."""
    model = _tiny_clip(tiny[0].config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("vision_frame_summary", None)
    saved.pop("router_logit_scale_max", None)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    reloaded = SalovaForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.frame_summary == "class_token"
    batch = make_batch(model.config, SEGMENTS)
    with torch.no_grad():
        before, after = model(**batch), reloaded(**batch)
    assert torch.equal(before.selected_segments, after.selected_segments)
    assert torch.allclose(before.logits, after.logits, atol=1e-5)


def test_building_and_loading_print_no_special_token_warning(tmp_path):
    """transformers' default SigLIP config has special tokens outside its vocabulary; SALOVA's validation must not
    build it (warnings are printed once per process, hence the fresh one)."""
    script = (
        "from salova.hub_configs import build_salova\n"
        "from salova.modeling import SalovaConfig, SalovaForConditionalGeneration\n"
        "SalovaConfig()\n"
        f"model, _ = build_salova('tiny')\nmodel.save_pretrained({str(tmp_path)!r})\n"
        f"SalovaForConditionalGeneration.from_pretrained({str(tmp_path)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "must be `None` or an integer within the vocabulary" not in result.stdout + result.stderr


OLD_CHECKPOINT = Path(__file__).parent / "fixtures" / "tiny-checkpoint-5c1996c"


def test_checkpoint_saved_before_the_conformance_changes_answers_the_same():
    model, loading = SalovaForConditionalGeneration.from_pretrained(OLD_CHECKPOINT, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing, unexpected or mismatched weights
    expected = json.loads((OLD_CHECKPOINT / "expected.json").read_text())
    batch = make_batch(model.config, SEGMENTS, seed=0)
    batch.pop("labels")
    with torch.no_grad():
        out = model.eval()(**batch)
        tokens = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.selected_segments.tolist() == expected["selected_segments"]
    assert torch.allclose(out.router_scores, torch.tensor(expected["router_scores"]), atol=1e-5)
    assert torch.allclose(out.logits[:, -1, :8], torch.tensor(expected["logits_last"]), atol=1e-4)
    assert tokens[:, batch["input_ids"].shape[1] :].tolist() == expected["greedy_tokens"]


def test_num_focus_segments_may_come_as_a_processor_tensor(tiny):
    model, _ = tiny
    batch = make_batch(model.config, SEGMENTS, num_focus_segments=2)
    with torch.no_grad():
        assert model(**batch, num_focus_segments=torch.tensor(2)).selected_segments.shape == (2, 2)
    with pytest.raises(ValueError, match="num_focus_segments must be an integer >= 1"), torch.no_grad():
        model(**batch, num_focus_segments=torch.tensor(0))

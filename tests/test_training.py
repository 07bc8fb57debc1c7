"""Training data, labels, collator and the trainer's loss (issue 4, first part)."""

import copy
import json

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import colour_scenes
from salova.modeling.losses import similarity_loss
from salova.processing import SalovaVideoProcessor
from salova.training.collator import SalovaCollator
from salova.training.data import THRESHOLDS, RowSettings, dense_caption_labels, question_labels
from salova.training.data_check import DataCheckError, check_data
from salova.training.trainer import SalovaTrainer
from trl import SFTConfig

from salova.video_writer import write_video

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 220, 40)]


def test_dense_caption_labels_code_and_paper_thresholds():
    v2t = np.array([[0.20, 0.05, 0.19], [0.01, 0.02, 0.03]])
    t2t = np.array([[1.00, 0.81, 0.10], [0.20, 0.30, 0.10]])
    code = dense_caption_labels(v2t, t2t, THRESHOLDS["code"])  # t2t > 0.83 or v2t > 0.21
    paper = dense_caption_labels(v2t, t2t, THRESHOLDS["paper"])  # t2t > 0.8 or v2t > 0.18
    np.testing.assert_array_equal(code[0], [1, 0, 0])
    np.testing.assert_array_equal(paper[0], [1, 1, 1])
    # No positive at all: the arg-max v2t scene.
    np.testing.assert_array_equal(code[1], [0, 0, 1])


def test_question_labels_threshold_or_argmax():
    labels = question_labels(np.array([[0.1, 0.25, 0.21], [0.1, 0.15, 0.05]]), THRESHOLDS["code"])
    np.testing.assert_array_equal(labels, [[0, 1, 1], [0, 1, 0]])


@pytest.fixture(scope="module")
def qa_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_video(root / "v.mp4", colour_scenes(COLOURS, 3.0, fps=4, size=(64, 64)), fps=4)
    record = {
        "id": "q1",
        "video": "v.mp4",
        "scenes": [{"start": 3.0 * i, "end": 3.0 * i + 3.0} for i in range(4)],
        "conversations": [
            {"role": "user", "content": "what colour is the third scene?"},
            {"role": "assistant", "content": "blue"},
        ],
        "v2t": [[0.1, 0.1, 0.3, 0.05]],
    }
    bad = [
        {**record, "id": "wrong-shape", "v2t": [[0.1, 0.2]]},
        {**record, "id": "no-video", "video": "missing.mp4"},
        {**record, "id": "empty", "conversations": []},
    ]
    path = root / "stage2.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [record, *bad]) + "\nnot json\n")
    return path


def _rows(path, stage="2", **kwargs):
    rows, _ = check_data(path, RowSettings(stage, SalovaVideoProcessor()), num_proc=1, show=False, **kwargs)
    return rows.to_list()


def test_bad_records_are_skipped_with_a_reason_or_raise_when_strict(qa_corpus, tmp_path):
    rows, report = check_data(qa_corpus, RowSettings("2", SalovaVideoProcessor()), cache_dir=tmp_path, num_proc=1)
    assert [row["id"] for row in rows] == ["q1"]
    assert json.loads(rows[0]["query_labels"]) == [[0.0, 0.0, 1.0, 0.0]] and rows[0]["boundaries"] == [3.0, 6.0, 9.0]
    skipped = {reason: entry["count"] for reason, entry in report["reasons"]["skipped"].items()}
    assert skipped == {
        "'v2t' of the wrong shape": 1,
        "video file missing": 1,
        "malformed conversation": 1,
        "malformed JSON": 1,
    }
    assert report["reasons"]["skipped"]["malformed JSON"]["first"]["origin"].endswith("stage2.jsonl:5")
    assert json.loads((tmp_path / "data_check.json").read_text())["skipped"] == 4
    with pytest.raises(DataCheckError, match=r"stage2\.jsonl:2: 'v2t' must be 1 x 4"):
        check_data(qa_corpus, RowSettings("2", SalovaVideoProcessor()), num_proc=1, strict=True, show=False)


def test_collator_labels_only_the_response(tiny, qa_corpus):
    _, processor = tiny
    batch = SalovaCollator(processor)(_rows(qa_corpus) * 2)
    assert batch["segments_per_video"].tolist() == [4, 4] and batch["segment_labels"].shape == (8,)
    for row in range(2):
        supervised = batch["labels"][row] != -100
        assert processor.decode(batch["input_ids"][row][supervised]) == "blue<|im_end|>\n"
        assert (batch["input_ids"][row][~supervised] == processor.video_token_id).sum() == processor.num_video_tokens(4)


def test_collator_replaces_a_row_whose_segments_differ_from_the_check(tiny, qa_corpus, caplog):
    _, processor = tiny
    good = _rows(qa_corpus)[0]
    bad = dict(good, boundaries=[2.5, 2.8, 6.0, 9.0], focus_labels="[0, 0, 0, 1, 0]")
    collator = SalovaCollator(processor)
    batch = collator([good, bad])
    assert batch["data_replaced_rows"].item() == 1 and "segments where the data check planned 5" in caplog.text
    assert len(batch["labels"]) == 1 and batch["query_label_mask"].tolist() == [True]
    assert collator.failures == {"segments differ from the data check": 1}


def _trainer(model, processor, output_dir, rows):
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        report_to=[],
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        use_cpu=True,
        max_length=None,
        save_strategy="no",
        activation_checkpointing=False,  # TRL's default sets the deprecated `gradient_checkpointing` otherwise
    )
    trainer = SalovaTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=SalovaCollator(processor),
        processing_class=processor,
    )
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.mark.parametrize("weight", [0.0, 5.0])
def test_similarity_loss_is_in_the_optimised_loss(tiny, qa_corpus, tmp_path, weight):
    model, processor = tiny
    model = copy.deepcopy(model).train()
    model.config.similarity_loss_weight = weight
    rows = _rows(qa_corpus) * 2
    trainer = _trainer(model, processor, tmp_path, rows)
    batch = SalovaCollator(processor)(rows)
    model.zero_grad()
    loss = trainer.training_step(model, dict(batch))
    router_grad = sum(p.grad.abs().sum().item() for p in model.model.router.parameters() if p.grad is not None)
    metrics = trainer._metrics["train"]
    expected = metrics["lm_loss"][-1] + weight * metrics["similarity_loss"][-1]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The router is trained by L_sim only: no weight, no gradient.
    assert (router_grad > 0) == (weight > 0)
    assert all(p.grad is not None for p in model.model.projector.parameters())


@pytest.fixture(scope="module")
def conversation_rows(tmp_path_factory) -> list[dict]:
    """Stage-2 rows whose queries take every path of `L_sim`: a three-turn conversation (two extra queries) on a
    four-scene video, a two-turn one (one extra query) on a three-scene video, and a row without scenes (no
    router label)."""
    root = tmp_path_factory.mktemp("conversations")
    write_video(root / "four.mp4", colour_scenes(COLOURS, 3.0, fps=4, size=(64, 64)), fps=4)
    write_video(root / "three.mp4", colour_scenes(COLOURS[1:], 3.0, fps=4, size=(64, 64)), fps=4)

    def record(name, video, scenes, turns, v2t=True):
        conversation = [
            {"role": role, "content": text}
            for turn in turns
            for role, text in zip(("user", "assistant"), turn, strict=True)
        ]
        result = {"id": name, "video": video, "conversations": conversation}
        if v2t:
            result["scenes"] = [{"start": 3.0 * i, "end": 3.0 * i + 3.0} for i in range(scenes)]
            result["v2t"] = [[0.9 if scene == turn else 0.01 for scene in range(scenes)] for turn in range(len(turns))]
        return result

    turns = [("what colour is scene one?", "red"), ("and scene two?", "green"), ("which is third?", "blue")]
    records = [
        record("three-turns", "four.mp4", 4, turns),
        record("two-turns", "three.mp4", 3, [("first colour?", "green"), ("the last one?", "yellow")]),
        record("no-scenes", "three.mp4", 3, turns[:1], v2t=False),
    ]
    path = root / "stage2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return _rows(path)


def _hand_composed_objective(model, batch, num_items_in_batch, accumulation_steps):
    """SALOVA's objective for one of `accumulation_steps` micro-batches, composed by hand from the model's public
    pieces: `(loss, per-token LM loss, L_sim)`. The video is encoded once; each row's first query is routed by the
    forward, each extra query against the routing tokens of its row's video; `L_sim` averages over every labelled
    query."""
    core = model.model
    features = core.get_video_features(batch["pixel_values_videos"], batch["frames_per_segment"])
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        video_latents=features.last_hidden_state,
        video_routing_tokens=features.pooler_output,
        segments_per_video=batch["segments_per_video"],
        query_input_ids=batch["query_input_ids"],
        query_attention_mask=batch["query_attention_mask"],
        segment_labels=batch["segment_labels"],
        use_cache=False,
    )
    targets = batch["labels"][:, 1:]
    token_sum = F.cross_entropy(outputs.logits[:, :-1].float().flatten(0, 1), targets.flatten(), reduction="sum")
    segment_mask = outputs.router_scores.isfinite()
    routing_tokens = features.pooler_output.new_zeros(*segment_mask.shape, features.pooler_output.shape[-1])
    routing_tokens[segment_mask] = features.pooler_output
    rows = batch["extra_query_rows"]
    query_states, query_mask = core.encode_query(batch["extra_query_input_ids"], batch["extra_query_attention_mask"])
    extra_scores = core.router(routing_tokens[rows], segment_mask[rows], query_states, query_mask)
    labelled = batch["query_label_mask"]
    retrieval = similarity_loss(
        torch.cat([outputs.router_scores[labelled], extra_scores]),
        torch.cat([batch["query_labels"][labelled], batch["extra_query_labels"]]),
        torch.cat([segment_mask[labelled], segment_mask[rows]]),
        use_margin=False,
    )
    weight = model.config.similarity_loss_weight
    loss = token_sum / num_items_in_batch + weight * retrieval / accumulation_steps
    return loss, token_sum / (targets != -100).sum(), retrieval


def test_the_trainer_optimises_the_objective_of_every_labelled_query(tiny, conversation_rows, tmp_path):
    """One micro-batch of two accumulated (`num_items_in_batch` counts the tokens of both): the loss, its gradients
    and the logged parts equal the objective composed by hand."""
    model, processor = tiny
    model = copy.deepcopy(model).train()
    model.config.similarity_margin_loss = False  # the margin term draws its pairs at random
    model.config.similarity_loss_weight = 3.0
    batch = SalovaCollator(processor)(conversation_rows)
    assert batch["query_label_mask"].tolist() == [True, True, False]
    assert batch["extra_query_rows"].tolist() == [0, 0, 1]
    num_items_in_batch = 2 * int((batch["labels"][:, 1:] != -100).sum()) + 3
    trainer = _trainer(model, processor, tmp_path, conversation_rows)
    trainer.current_gradient_accumulation_steps = 2

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    torch.manual_seed(0)  # the router's dropout draws the same masks on both paths
    expected, lm_loss, retrieval = _hand_composed_objective(model, batch, num_items_in_batch, 2)
    expected_gradients = gradients(expected)
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(num_items_in_batch))
    actual_gradients = gradients(loss)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert expected_gradients.keys() == actual_gradients.keys()
    assert any("router" in name for name in actual_gradients)
    # Float32 summation order differs between the paths (the LM head sees the response positions only, or all).
    scale = max(gradient.abs().max() for gradient in expected_gradients.values()).item()
    torch.testing.assert_close(actual_gradients, expected_gradients, rtol=1e-5, atol=1e-6 * scale)
    metrics = trainer._metrics["train"]
    assert metrics["lm_loss"][-1] == pytest.approx(lm_loss.item(), rel=1e-6)
    assert metrics["similarity_loss"][-1] == pytest.approx(retrieval.item(), rel=1e-6)


def test_the_trainer_runs_the_whole_loss_inside_one_forward_of_the_model(tiny, conversation_rows, tmp_path):
    """Sharded engines gather a module's weights within the forward of the model they wrap: the video's encoding
    and the routing of every query run inside that one call."""
    model, processor = tiny
    model = copy.deepcopy(model).train()
    trainer = _trainer(model, processor, tmp_path, conversation_rows)
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append("model"))
    model.register_forward_hook(lambda *_: calls.append("model done"))
    for name in ("vision_tower", "router"):
        getattr(model.model, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    trainer.compute_loss(model, SalovaCollator(processor)(conversation_rows), num_items_in_batch=torch.tensor(40))
    assert calls[0] == "model" and calls[-1] == "model done" and calls.count("model") == 1
    assert calls.count("router") == 2  # the rows' own queries, then the extra ones
    assert "vision_tower" in calls

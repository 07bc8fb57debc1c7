"""Training data, labels, collator and the trainer's loss (issue 4, first part)."""

import copy
import json

import datasets
import numpy as np
import pytest
from conftest import colour_scenes
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

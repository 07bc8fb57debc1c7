"""The collator on the rows that real variants meet: queries padded with the query tokenizer's own pad id, failed
rows left out of stage 1's in-batch targets, trimmed turns taking their router queries and focus labels with them."""

import copy
import json

import pytest
import torch
from conftest import colour_scenes
from salova.processing import SalovaVideoProcessor
from salova.training.collator import SalovaCollator
from salova.training.data import RowSettings
from salova.training.data_check import check_data

from salova.video_writer import write_video

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 220, 40)]
TURNS = [
    ("what colour is the first scene?", "red"),
    ("and the second one, what colour does it show?", "green"),
    ("which colour is the third?", "blue"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A four-scene video with a three-turn conversation (turn i about scene i), and two one-scene clips."""
    root = tmp_path_factory.mktemp("collator-rows")
    write_video(root / "v.mp4", colour_scenes(COLOURS, 3.0, fps=4, size=(64, 64)), fps=4)
    for index, colour in enumerate(COLOURS[:2]):
        write_video(root / f"clip{index}.mp4", colour_scenes([colour], 2.0, fps=4, size=(64, 64)), fps=4)
    (root / "broken.mp4").write_bytes(b"not a video")
    conversation = [
        {"role": role, "content": text}
        for turn in TURNS
        for role, text in zip(("user", "assistant"), turn, strict=True)
    ]
    v2t = [[0.9 if scene == turn else 0.01 for scene in range(4)] for turn in range(3)]
    stage2 = {"id": "three", "video": "v.mp4", "scenes": [{"start": 3.0 * i} for i in range(4)]}
    (root / "stage2.jsonl").write_text(json.dumps({**stage2, "conversations": conversation, "v2t": v2t}) + "\n")
    captions = ["a red clip", "a green clip that is described at some length"]
    records = [{"id": f"c{index}", "video": f"clip{index}.mp4", "caption": text} for index, text in enumerate(captions)]
    (root / "stage1.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return root


def _rows(corpus, stage: str) -> list[dict]:
    name = "stage1.jsonl" if stage == "1" else "stage2.jsonl"
    rows, _ = check_data(corpus / name, RowSettings(stage, SalovaVideoProcessor()), num_proc=1, show=False)
    return rows.to_list()


def _broken(row: dict, corpus) -> dict:
    """`row` with its video damaged after the data check."""
    return {**row, "id": f"{row['id']}-broken", "video": str(corpus / "broken.mp4")}


def test_queries_are_padded_with_the_query_tokenizers_pad_id(tiny, corpus):
    """An LLM pad id outside the query encoder's vocabulary (as Qwen2.5's and Llama-3's are for SigLIP and CLIP)
    never reaches the query encoder."""
    model, processor = tiny
    processor = copy.deepcopy(processor)
    query_vocabulary = model.config.query_encoder_config.vocab_size
    processor.tokenizer.add_special_tokens(
        {"additional_special_tokens": [f"<|reserved_{index}|>" for index in range(query_vocabulary)]}
    )
    processor.tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    assert processor.tokenizer.pad_token_id >= query_vocabulary
    batch = SalovaCollator(processor, chat_template=None)(_rows(corpus, "1"))
    padding = batch["query_attention_mask"] == 0
    assert padding.any(), "the two captions should differ in length"
    assert (batch["query_input_ids"][padding] == processor.query_tokenizer.pad_token_id).all()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == processor.tokenizer.pad_token_id).all()
    with torch.no_grad():
        model.model.encode_query(batch["query_input_ids"], batch["query_attention_mask"])


def test_a_tokenizer_without_pad_token_is_refused_by_name(tiny):
    _, processor = tiny
    processor = copy.deepcopy(processor)
    processor.tokenizer.pad_token = None
    with pytest.raises(ValueError, match="processor's tokenizer has no pad token"):
        SalovaCollator(processor)


def test_a_failed_stage_1_row_leaves_the_in_batch_targets(tiny, corpus):
    """No copy of a good clip stands in for a failed one: two identical caption/clip pairs would be each other's
    negatives in the in-batch identity targets."""
    _, processor = tiny
    first, second = _rows(corpus, "1")
    collator = SalovaCollator(processor)
    batch = collator([first, _broken(first, corpus), second])
    assert batch["data_replaced_rows"].item() == 1 and sum(collator.failures.values()) == 1
    assert batch["segments_per_video"].tolist() == [1, 1]
    clips = batch["pixel_values_videos"].split(batch["frames_per_segment"].tolist())
    assert not torch.equal(clips[0], clips[1])
    assert (batch["labels"] != -100).any(dim=1).all()

    # A batch of failed rows only: one stand-in row, masked, drawn from the fallback rows.
    fallback = SalovaCollator(processor, fallback_rows=[first])([_broken(first, corpus), _broken(second, corpus)])
    assert fallback["data_replaced_rows"].item() == 2 and fallback["segments_per_video"].tolist() == [1]
    assert (fallback["labels"] == -100).all()


def test_a_trimmed_turn_no_longer_routes_or_steers_focus(tiny, corpus):
    _, processor = tiny
    (row,) = _rows(corpus, "2")
    full = SalovaCollator(processor, max_length=None)([row])
    assert full["extra_query_labels"].argmax(dim=1).tolist() == [1, 2]
    assert full["segment_labels"].tolist() == [1.0, 1.0, 1.0, 0.0]
    length = int(full["attention_mask"].sum())

    trimmed = SalovaCollator(processor, max_length=length - 1)([row])
    assert trimmed["data_trimmed_rows"].item() == 1
    answers = processor.decode(trimmed["input_ids"][0][trimmed["labels"][0] != -100])
    assert "red" in answers and "green" not in answers and "blue" in answers
    # The second turn is gone: its query, its L_sim targets and its scene's focus label with it.
    assert trimmed["extra_query_labels"].argmax(dim=1).tolist() == [2]
    assert trimmed["extra_query_rows"].tolist() == [0]
    third = processor.query_tokenizer(TURNS[2][0])["input_ids"]
    assert trimmed["extra_query_input_ids"][0][: len(third)].tolist() == third
    assert trimmed["query_labels"][0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert trimmed["segment_labels"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_the_video_cache_decodes_each_video_once_for_the_same_batches(tiny, corpus, monkeypatch):
    _, processor = tiny
    rows = _rows(corpus, "1")
    uncached = SalovaCollator(processor)(rows)
    decoded = []
    process_video = type(processor.video_processor).process_video

    def counted(self, video, *args, **kwargs):
        decoded.append(video)
        return process_video(self, video, *args, **kwargs)

    monkeypatch.setattr(type(processor.video_processor), "process_video", counted)
    collator = SalovaCollator(processor, video_cache_mb=1024)
    for batch in (collator(rows), collator(rows)):
        assert set(batch) == set(uncached)
        assert all(torch.equal(batch[name], value) for name, value in uncached.items())
    assert len(decoded) == len(rows)
    # A budget under one video's tensors keeps none of them.
    decoded.clear()
    collator = SalovaCollator(processor, video_cache_mb=2**-20)
    collator(rows), collator(rows)
    assert len(decoded) == 2 * len(rows)

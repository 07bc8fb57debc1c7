"""SalovaProcessor: placeholder arithmetic, router queries, batches, chat templates, bad input, fresh-process load."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import colour_scenes, real_video, run_without_repo
from PIL import Image
from salova.hub_configs import load_chat_template
from salova.processing import SalovaProcessor, SalovaVideoProcessor, format_timestamp
from transformers import AutoProcessor

QUESTION = "What moves in the blue scene?"


def _placeholders(processor, inputs):
    return (inputs["input_ids"] == processor.video_token_id).sum(1).tolist()


def test_model_ready_tensors_for_a_video(tiny, scene_video):
    model, processor = tiny
    inputs = processor(videos=str(scene_video), text=QUESTION)
    assert inputs["pixel_values_videos"].shape == (15, 3, 56, 56)
    assert inputs["frames_per_segment"].tolist() == [3, 3, 3, 3, 3]
    assert inputs["segments_per_video"].tolist() == [5]
    np.testing.assert_allclose(inputs["segment_times"][:, 0], [0, 3, 6, 9, 12], atol=0.1)
    assert inputs["segment_times"][-1, 1].item() == pytest.approx(15.0)
    # SigLIP normalisation maps [0, 255] to [-1, 1].
    assert -1.0 <= inputs["pixel_values_videos"].min() < -0.5 < 0.9 < inputs["pixel_values_videos"].max() <= 1.0
    assert processor.query_tokenizer.decode(inputs["query_input_ids"][0]) == QUESTION
    with torch.no_grad():
        out = model(**inputs)
    assert out.router_scores.shape == (1, 5) and torch.isfinite(out.logits).all()
    described = processor.describe_segments(inputs, out.router_scores, out.selected_segments)[0]
    assert [d["start"] for d in described] == [f"00:00:{s:02d}.000" for s in (0, 3, 6, 9, 12)]
    assert all(d["selected"] for d in described)  # 5 segments, K = 5


@pytest.mark.parametrize(("num_segments", "k"), [(1, 5), (5, 5), (12, 5), (12, 1), (3, 9)])
def test_placeholder_count_is_latents_times_min_k_n_plus_n(tiny, num_segments, k):
    model, processor = tiny
    processor = copy.copy(processor)
    processor.num_focus_segments = k
    frames = np.stack(list(colour_scenes([(200, 30, 30)], num_segments * 2.0, fps=2)))
    boundaries = [float(2 * index) for index in range(1, num_segments)]
    inputs = processor(videos=frames, video_fps=2, text=QUESTION, segment_boundaries=[boundaries])
    expected = processor.connector_num_latents * min(k, num_segments) + num_segments
    assert inputs["segments_per_video"].tolist() == [num_segments]
    assert _placeholders(processor, inputs) == [expected] == [model.config.num_video_tokens(num_segments, k)]
    with torch.no_grad():
        assert model(**inputs, num_focus_segments=k).selected_segments.shape == (1, min(k, num_segments))


def test_placeholder_goes_where_the_text_puts_it(tiny, scene_video):
    _, processor = tiny
    inputs = processor(videos=str(scene_video), text=f"Look: {processor.video_token} {QUESTION}")
    ids = inputs["input_ids"][0]
    first = int((ids == processor.video_token_id).nonzero()[0])
    assert processor.tokenizer.decode(ids[:first]).strip() == "Look:"
    # The router query never holds the placeholder.
    assert processor.query_tokenizer.decode(inputs["query_input_ids"][0]) == f"Look:  {QUESTION}"
    explicit = processor(videos=str(scene_video), text=f"Look: {QUESTION}", queries="blue scene")
    assert processor.query_tokenizer.decode(explicit["query_input_ids"][0]) == "blue scene"
    # Without a placeholder the video goes first, followed by a newline.
    plain = processor(videos=str(scene_video), text=QUESTION)
    assert processor.tokenizer.decode(plain["input_ids"][0]).replace(processor.video_token, "") == f"\n{QUESTION}"


def test_batch_of_videos_of_different_lengths(tiny, scene_video):
    model, processor = tiny
    short = np.stack(list(colour_scenes([(200, 30, 30), (30, 200, 30)], 4.0, fps=5)))
    image = Image.fromarray(np.full((40, 60, 3), 90, np.uint8))
    questions = [QUESTION, "What colour is the second scene?", "What is in the image?"]
    inputs = processor(videos=[str(scene_video), short, image], text=questions, video_fps=5.0)
    counts = inputs["segments_per_video"].tolist()
    assert counts == [5, 2, 1]
    assert inputs["frames_per_segment"].tolist() == [3, 3, 3, 3, 3, 4, 4, 1]
    assert inputs["pixel_values_videos"].shape[0] == 24 == int(inputs["frames_per_segment"].sum())
    assert _placeholders(processor, inputs) == [processor.num_video_tokens(n) for n in counts]
    lengths = inputs["attention_mask"].sum(1)
    assert inputs["input_ids"].shape[1] == int(lengths.max())
    pad, width = processor.tokenizer.pad_token_id, inputs["input_ids"].shape[1]
    for row, length in enumerate(lengths.tolist()):  # left padding (for generation), masked
        assert (inputs["input_ids"][row, : width - length] == pad).all()
        assert inputs["attention_mask"][row, width - length :].all()
    query_lengths = inputs["query_attention_mask"].sum(1).tolist()
    assert len(set(query_lengths)) > 1 and inputs["query_input_ids"].shape[1] == max(query_lengths)

    # Each row of the padded batch scores its segments as it does alone.
    with torch.no_grad():
        batch_scores = model(**inputs).router_scores
        for row, (video, question) in enumerate(zip([str(scene_video), short, image], questions, strict=True)):
            alone = model(**processor(videos=[video], text=question, video_fps=5.0)).router_scores
            torch.testing.assert_close(batch_scores[row, : counts[row]], alone[0], rtol=1e-4, atol=1e-5)


def test_images_are_one_frame_one_segment_videos(tiny):
    _, processor = tiny
    images = [Image.fromarray(np.full((30, 30, 3), value, np.uint8)) for value in (10, 200)]
    inputs = processor(videos=images, text=["a dark square", "a light square"])
    assert inputs["frames_per_segment"].tolist() == [1, 1] and inputs["segments_per_video"].tolist() == [1, 1]
    assert _placeholders(processor, inputs) == [processor.connector_num_latents + 1] * 2


EXPECTED_TEMPLATES = {
    "qwen2.5": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n"
        "<|im_start|>assistant\nA bike.<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
    ),
    "llama-3.2": (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
        "\n\n<video>\nWhat happens?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA bike.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd then?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        "\n\n"
    ),
    "phi-3.5": (
        "<|system|>\nBe brief.<|end|>\n<|user|>\n<video>\nWhat happens?<|end|>\n<|assistant|>\nA bike.<|end|>\n"
        "<|user|>\nAnd then?<|end|>\n<|assistant|>\n"
    ),
}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "video", "path": "clip.mp4"}, {"type": "text", "text": "What happens?"}]},
    {"role": "assistant", "content": "A bike."},
    {"role": "user", "content": "And then?"},
]


@pytest.mark.parametrize("family", sorted(EXPECTED_TEMPLATES))
def test_chat_template_per_llm_family(tiny, family):
    _, processor = tiny
    rendered = processor.apply_chat_template(
        CONVERSATION, chat_template=load_chat_template(family), add_generation_prompt=True
    )
    assert rendered == EXPECTED_TEMPLATES[family]
    # Plain strings among the content items are text.
    strings = [CONVERSATION[0], {"role": "user", "content": [{"type": "video", "path": "clip.mp4"}, "What happens?"]}]
    template = load_chat_template(family)
    assert processor.apply_chat_template(strings, chat_template=template) == processor.apply_chat_template(
        CONVERSATION[:2], chat_template=template
    )


def test_qwen_template_adds_the_default_system_turn_and_plain_template_is_video_then_caption(tiny):
    _, processor = tiny
    user_only = [{"role": "user", "content": [{"type": "video", "path": "c.mp4"}, {"type": "text", "text": "Hi?"}]}]
    qwen = processor.apply_chat_template(user_only, chat_template=load_chat_template("qwen2.5"))
    assert qwen.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n")
    caption = [
        {"role": "user", "content": [{"type": "video", "path": "c.mp4"}]},
        {"role": "assistant", "content": "A red square moves right."},
    ]
    plain = processor.apply_chat_template(caption, chat_template=load_chat_template("plain"))
    assert plain == f"<video>\nA red square moves right.{processor.tokenizer.eos_token}"


def test_video_item_naming_its_video_under_two_keys_is_one_video(tiny, scene_video):
    item = {"type": "video", "video": str(scene_video), "path": str(scene_video)}
    conversation = [{"role": "user", "content": [item, {"type": "text", "text": "Hi."}]}]
    inputs = tiny[1].apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert inputs["segments_per_video"].tolist() == [5]


def test_chat_input_tokenized_with_the_last_user_turn_as_query(tiny, scene_video):
    model, processor = tiny
    conversation = [
        {"role": "user", "content": [{"type": "video", "path": str(scene_video)}, {"type": "text", "text": "Hi."}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": QUESTION},
    ]
    inputs = processor.apply_chat_template(
        [conversation, conversation[:1]], add_generation_prompt=True, tokenize=True, return_dict=True
    )
    queries = [processor.query_tokenizer.decode(row, skip_special_tokens=True) for row in inputs["query_input_ids"]]
    assert queries == [QUESTION, "Hi."]
    assert _placeholders(processor, inputs) == [processor.num_video_tokens(5)] * 2
    text = processor.tokenizer.decode(inputs["input_ids"][0]).replace(processor.video_token, "")
    assert text.startswith("<|im_start|>system") and text.count("<|im_start|>") == 5
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[0] == 2


def test_real_clip_through_processor_and_model(tiny):
    model, processor = tiny
    inputs = processor(videos=str(real_video("bikes.mp4")), text="Where do the bikes go?")
    # bikes: 6 scenes; the last (9.68-10 s) holds no 1 FPS frame and joins the fifth.
    assert inputs["frames_per_segment"].tolist() == [2, 2, 2, 2, 2]
    np.testing.assert_allclose(inputs["segment_times"][:, 0], [0.0, 1.2, 3.04, 5.48, 7.48], atol=0.041)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_bad_text_inputs_are_named(tiny, scene_video):
    _, processor = tiny
    with pytest.raises(ValueError, match="got 2 videos for 1 texts"):
        processor(videos=[str(scene_video), str(scene_video)], text=QUESTION)
    with pytest.raises(ValueError, match="holds 2 '<video>' placeholders"):
        processor(videos=str(scene_video), text="<video> <video> what?")
    with pytest.raises(ValueError, match="holds '<video>' but no video was given"):
        processor(text="<video> what?")
    with pytest.raises(ValueError, match=r"Rows \[0\] have an empty router query"):
        processor(videos=str(scene_video), text="<video>")
    with pytest.raises(ValueError, match="truncation"):
        processor(videos=str(scene_video), text=QUESTION, truncation=True, max_length=20)
    with pytest.raises(ValueError, match="more than one video"):
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video", "path": "a.mp4"}, {"type": "video", "path": "b.mp4"}]}],
            tokenize=True,
        )
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        processor(videos="missing.mp4", text=QUESTION)


def test_processor_refuses_a_tokenizer_without_the_placeholder(tiny):
    from salova.hub_configs import build_tiny_tokenizer

    _, processor = tiny
    with pytest.raises(ValueError, match="does not know the video placeholder"):
        SalovaProcessor(
            processor.video_processor, build_tiny_tokenizer(with_video_token=False), processor.query_tokenizer
        )


def test_timestamps_are_hh_mm_ss_mmm():
    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(0.79) == "00:00:00.790"  # a cut before the first second is not at 00:00:00
    assert format_timestamp(3725.9) == "01:02:05.900"
    assert format_timestamp(1.0005) == "00:00:01.000"
    assert format_timestamp(-1) == "00:00:00.000"


def test_segment_descriptions_show_milliseconds(tiny):
    _, processor = tiny
    frames = np.stack(list(colour_scenes([(200, 30, 30)], 4.0, fps=10)))
    inputs = processor(videos=frames, video_fps=10, text=QUESTION, segment_boundaries=[[0.79]])
    described = processor.describe_segments(inputs)[0]
    assert [(d["start"], d["end"]) for d in described] == [
        ("00:00:00.000", "00:00:00.790"),
        ("00:00:00.790", "00:00:04.000"),
    ]


FRESH_PROCESS = """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, video, expected_path = sys.argv[1:4]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
    inputs = processor(videos=video, text="What moves in the blue scene?")
    expected = torch.load(expected_path)
    for name, value in expected["inputs"].items():
        assert torch.equal(inputs[name], value), name
    with torch.no_grad():
        out = model(**inputs)
    print("max_abs_diff", (out.logits - expected["logits"]).abs().max().item())
    print("segments", processor.describe_segments(inputs)[0][1]["start"])
    print("video_processor", type(processor.video_processor).__module__)
    """


def test_model_and_processor_load_with_remote_code_in_a_fresh_process(tiny, tmp_path, scene_video):
    model, processor = tiny
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    remote_files = {
        "processing_salova.py",
        "video_processing_salova.py",
        "video_decoding.py",
        "video_frames.py",
        "frame_loop.py",
        "frame_sampling.py",
        "decode_parts.py",
        "scene_detection.py",
        "segmentation.py",
    }
    assert remote_files | {"frame_preprocessing.py", "processor_config.json"} <= {p.name for p in folder.iterdir()}
    for name in remote_files:  # flat files importing each other relatively only
        source = (folder / name).read_text()
        assert "from processing" not in source and "from salova" not in source and "import salova" not in source
    inputs = processor(videos=str(scene_video), text=QUESTION)
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.save({"inputs": dict(inputs), "logits": logits}, tmp_path / "expected.pt")
    loaded = run_without_repo(FRESH_PROCESS, folder, scene_video, tmp_path / "expected.pt", tmp_path=tmp_path)
    # Same inputs bit for bit (checked in the script); logits equal up to float summation order.
    assert float(loaded.split("max_abs_diff ")[1].split()[0]) < 1e-5
    assert "segments 00:00:03.000" in loaded
    assert "video_processor transformers_modules." in loaded


def test_video_settings_changed_after_creation_take_effect(tiny):
    _, processor = tiny
    uncut = np.stack(list(colour_scenes([(200, 30, 30)], 20.0, fps=2)))  # 20 s, no cut
    video_processor = copy.deepcopy(processor.video_processor)
    assert video_processor(uncut, video_fps=2)["segments_per_video"].tolist() == [1]
    video_processor.segmenter = "fixed_windows"
    video_processor.window_seconds = 10
    built = SalovaVideoProcessor(size={"height": 56, "width": 56}, segmenter="fixed_windows", window_seconds=10)
    assert video_processor(uncut, video_fps=2)["segments_per_video"].tolist() == [2]
    assert built(uncut, video_fps=2)["segments_per_video"].tolist() == [2]
    assert video_processor(uncut, video_fps=2, window_seconds=5)["segments_per_video"].tolist() == [4]  # per call
    # Through the processor, as plain keywords or grouped for the video processor.
    windows = processor(videos=uncut, video_fps=2, text=QUESTION, segmenter="fixed_windows", window_seconds=10)
    grouped = processor(
        videos=uncut, video_fps=2, text=QUESTION, videos_kwargs={"segmenter": "fixed_windows", "window_seconds": 5}
    )
    assert windows["segments_per_video"].tolist() == [2] and grouped["segments_per_video"].tolist() == [4]

    two_scenes = np.stack(list(colour_scenes([(200, 30, 30), (30, 30, 200)], 4.0, fps=10)))
    video_processor.segmenter = "scenes"
    assert video_processor(two_scenes, video_fps=10)["segments_per_video"].tolist() == [2]
    video_processor.detector_min_content = 255.0  # no content change reaches it: no cut
    assert video_processor(two_scenes, video_fps=10)["segments_per_video"].tolist() == [1]

    video_processor.size = {"height": 32, "width": 32}
    assert video_processor(uncut, video_fps=2)["pixel_values_videos"].shape[-2:] == (32, 32)
    video_processor.do_normalize = False
    assert video_processor(uncut, video_fps=2)["pixel_values_videos"].min() >= 0.0


def test_decoded_arrays_without_frame_rate_or_channels_first(tiny):
    _, processor = tiny
    video_processor = processor.video_processor
    frames = np.stack(list(colour_scenes([(200, 30, 30), (30, 30, 200)], 4.0, fps=1)))  # (8, 48, 64, 3)
    # Without a frame rate the frames are taken as already sampled at 1 FPS: every frame is kept.
    last = video_processor(frames)
    assert int(last["frames_per_segment"].sum()) == 8
    assert last["segment_times"].tolist() == [[0.0, 8.0]]
    first = video_processor(frames.transpose(0, 3, 1, 2))
    for name in last:
        torch.testing.assert_close(first[name], last[name], rtol=0, atol=0)
    assert int(video_processor(frames, video_fps=4)["frames_per_segment"].sum()) == 2  # 8 frames at 4 FPS: 2 s
    with pytest.raises(ValueError, match="input_data_format"):
        video_processor(np.zeros((4, 3, 10, 3), np.uint8))
    explicit = video_processor(np.zeros((4, 3, 10, 3), np.uint8), input_data_format="channels_last")
    assert explicit["pixel_values_videos"].shape == (4, 3, 56, 56)


def test_video_settings_are_checked(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="segmenter must be one of"):
        processor.video_processor(np.zeros((2, 8, 8, 3), np.uint8), segmenter="shots")
    with pytest.raises(ValueError, match="size must be a square"):
        SalovaVideoProcessor(size={"height": 32, "width": 48})
    broken = copy.copy(processor)
    broken.num_focus_segments = 0
    with pytest.raises(ValueError, match="num_focus_segments must be a positive integer"):
        broken(text=QUESTION, segments_per_video=[3])


def test_text_inputs_for_a_stored_index_match_the_video_path(tiny, scene_video):
    _, processor = tiny
    from_video = processor(videos=str(scene_video), text=QUESTION)
    from_count = processor(text=QUESTION, segments_per_video=[5])
    assert set(from_count) == {"input_ids", "attention_mask", "query_input_ids", "query_attention_mask"}
    for name in from_count:
        assert torch.equal(from_count[name], from_video[name]), name
    # Through the chat template: a video item without a source, and the segment count.
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    with_source = [
        {"role": "user", "content": [{"type": "video", "path": str(scene_video)}, conversation[0]["content"][1]]}
    ]
    chat_count = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, processor_kwargs={"segments_per_video": [5]}
    )
    chat_video = processor.apply_chat_template(with_source, tokenize=True, return_dict=True)
    for name in chat_count:
        assert torch.equal(chat_count[name], chat_video[name]), name
    typed = processor(text=QUESTION, segments_per_video=[5], return_mm_token_type_ids=True)["mm_token_type_ids"]
    assert torch.equal(typed == 2, from_count["input_ids"] == processor.video_token_id)  # 2: video tokens
    with pytest.raises(ValueError, match="one positive count per text"):
        processor(text=[QUESTION, QUESTION], segments_per_video=[5])


def test_batched_greedy_generation_equals_each_row_alone(tiny, scene_video):
    model, processor = tiny
    short = np.stack(list(colour_scenes([(200, 30, 30), (30, 200, 30)], 4.0, fps=5)))
    videos = [str(scene_video), short]
    questions = [QUESTION, "What colour is the second scene of the video, and what shape moves in it?"]
    batch = processor(videos=videos, text=questions, video_fps=5.0)
    assert (batch["attention_mask"][:, -1] == 1).all() and (batch["attention_mask"][:, 0] == 0).any()  # left
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, batch["input_ids"].shape[1] :]
        for row, (video, question) in enumerate(zip(videos, questions, strict=True)):
            alone_inputs = processor(videos=[video], text=question, video_fps=5.0)
            alone = model.generate(**alone_inputs, max_new_tokens=6, do_sample=False)[0]
            alone = alone[alone_inputs["input_ids"].shape[1] :].tolist()
            assert together[row, : len(alone)].tolist() == alone
            assert (together[row, len(alone) :] == pad).all()


def test_saved_processor_keeps_types_auto_map_and_input_names(tiny, tmp_path):
    _, processor = tiny
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_salova.SalovaProcessor"}
    video_class = saved["video_processor"]["auto_map"]["AutoVideoProcessor"]
    assert video_class == "video_processing_salova.SalovaVideoProcessor"
    reloaded = SalovaProcessor.from_pretrained(tmp_path)
    assert reloaded.video_processor.image_mean == (0.5, 0.5, 0.5)  # a tuple again, not a list
    assert reloaded.to_dict() == processor.to_dict()
    assert reloaded.image_size == processor.image_size == 56
    assert processor.model_input_names == [
        "input_ids",
        "attention_mask",
        "query_input_ids",
        "query_attention_mask",
        "pixel_values_videos",
        "frames_per_segment",
        "segments_per_video",
        "segment_times",
    ]


def test_prompt_longer_than_the_llm_positions_is_refused(tiny):
    _, processor = tiny
    assert processor.tokenizer.model_max_length == 16384  # the tiny LLM's position table
    long_question = "what colour is the " * 5000
    with pytest.raises(ValueError, match=r"Row 0: the prompt is \d+ tokens, more than the LLM's 16384 positions"):
        processor(text=long_question, segments_per_video=[3])


def test_segment_thumbnails_come_from_the_decode_pass(tiny, scene_video):
    video_processor = tiny[1].video_processor
    outputs = video_processor(videos=[str(scene_video)], thumbnail_height=24, return_tensors="pt")
    decoded, segments = video_processor.process_video(str(scene_video), thumbnail_height=24)
    middles = [segment.first_frame + segment.num_frames // 2 for segment in segments]
    assert outputs["segment_thumbnails"].shape == (len(segments), 24, 32, 3) == (5, 24, 32, 3)
    np.testing.assert_array_equal(outputs["segment_thumbnails"].numpy(), decoded.thumbnails[middles])
    assert "segment_thumbnails" not in video_processor(videos=[str(scene_video)], return_tensors="pt")
    with pytest.raises(ValueError, match="thumbnail_height must be at least 2 pixels"):
        video_processor(videos=[str(scene_video)], thumbnail_height=0)


def test_processor_settings_shared_with_the_model_follow_its_config(tiny):
    """K, latents and the segment limits go by the config's names; the query length stays within the router's text
    table, which holds the pooled state besides the query tokens."""
    model, processor = tiny
    config = copy.deepcopy(model.config)
    config.num_focus_segments, config.connector_num_latents, config.router_max_segments = 3, 4, 9
    config.router_max_query_tokens = config.tower_config.text_config.max_position_embeddings = 64
    follower = copy.deepcopy(processor)
    follower.follow_model_config(config)
    assert (follower.num_focus_segments, follower.connector_num_latents) == (3, 4)
    assert follower.video_processor.router_max_segments == 9
    assert follower.video_processor.segmentation_policy().max_segments == 9
    assert follower.query_max_length == 63
    assert follower(text="x " * 100)["query_input_ids"].shape[1] == 63


def test_built_processor_query_length_fits_the_router_text_table(tiny):
    """A router with a 64-row text table takes 63 query tokens (plus the pooled state), not 64."""
    from salova.hub_configs.builder import build_processor

    model, processor = tiny
    config = copy.deepcopy(model.config)
    config.router_max_query_tokens = config.tower_config.text_config.max_position_embeddings = 64
    built = build_processor(config, copy.deepcopy(processor.tokenizer), processor.query_tokenizer)
    assert built.query_max_length == 63
    built.check_model_config(config)


def test_loading_beside_a_model_config_with_another_k_names_both_values(tiny, tmp_path):
    model, processor = tiny
    k = model.config.num_focus_segments
    other = copy.deepcopy(processor)
    other.num_focus_segments = k + 1
    model.config.save_pretrained(tmp_path)
    other.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"{tmp_path}: .*num_focus_segments={k + 1} \(model config: {k}\)"):
        SalovaProcessor.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"processor.follow_model_config\(model.config\)"):
        AutoProcessor.from_pretrained(tmp_path)
    # A processor saved alone has no model config to be checked against.
    other.save_pretrained(tmp_path / "alone")
    assert SalovaProcessor.from_pretrained(tmp_path / "alone").num_focus_segments == k + 1


def test_video_limits_and_query_length_are_checked_on_load(tiny, tmp_path):
    """Segment limits and the query length may be under the model's tables (a processor that merges more), not over."""
    model, processor = tiny
    changed = copy.deepcopy(processor)
    changed.video_processor.router_max_segments = model.config.router_max_segments + 1
    changed.query_max_length = model.config.router_max_query_tokens
    model.config.save_pretrained(tmp_path)
    changed.save_pretrained(tmp_path)
    with pytest.raises(ValueError) as error:
        SalovaProcessor.from_pretrained(tmp_path)
    assert "router_max_segments=257 (model config: at most 256)" in str(error.value)
    assert "query_max_length=2048 (model config: at most 2047)" in str(error.value)
    changed.video_processor.router_max_segments = 12
    changed.video_processor.max_frames_per_segment = 8
    changed.query_max_length = 64
    changed.save_pretrained(tmp_path)
    lower = SalovaProcessor.from_pretrained(tmp_path)
    assert (lower.video_processor.router_max_segments, lower.video_processor.max_frames_per_segment) == (12, 8)
    lower.follow_model_config(model.config)
    assert (lower.video_processor.router_max_segments, lower.query_max_length) == (12, 64)


def test_saved_files_with_the_old_setting_names_load_with_a_warning(tiny, tmp_path):
    """`num_latents` (processor) and `max_segments` (video processor) were the names of `connector_num_latents` and
    `router_max_segments` in saved processor files."""
    model, processor = tiny
    model.config.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    saved = json.loads(path.read_text())
    saved["num_latents"] = saved.pop("connector_num_latents")
    saved["video_processor"]["max_segments"] = saved["video_processor"].pop("router_max_segments")
    path.write_text(json.dumps(saved))
    with pytest.warns(FutureWarning, match="'num_latents' is now named 'connector_num_latents'"):
        with pytest.warns(FutureWarning, match="'max_segments' is now named 'router_max_segments'"):
            reloaded = SalovaProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    assert reloaded.connector_num_latents == model.config.connector_num_latents == 8
    with pytest.warns(FutureWarning, match="'max_segments' is now named"):
        assert SalovaVideoProcessor(max_segments=4).segmentation_policy().max_segments == 4
    with pytest.raises(ValueError, match="max_segments=4 and router_max_segments=5 name one setting"):
        SalovaVideoProcessor(max_segments=4, router_max_segments=5)

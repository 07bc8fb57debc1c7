"""`SalovaProcessor`: videos and questions in, model-ready tensors and segment times out.

Two tokenizers, as in `InstructBlipVideoProcessor`: `tokenizer` is the LLM's (it holds the `<video>` placeholder)
and `query_tokenizer` is the SigLIP/CLIP text tokenizer of the router's query encoder. Each video is decoded
once (scene cuts and 1 FPS frames in the same pass), cut into segments by the segment policy, and its `<video>`
placeholder expanded to `num_latents · min(K, N_v) + N_v` tokens, the FocusFast layout of the model.
"""

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .frame_preprocessing import FrameTransform, normalize_frames
from .scene_detection import SceneCutDetector
from .segmentation import Segment, SegmentationPolicy, plan_segments
from .video_decoding import DEFAULT_MAX_FRAME_PIXELS, DecodedVideo, decode_video

VIDEO_ITEM_KEYS = ("video", "path", "url", "image")


def format_timestamp(seconds: float) -> str:
    """`HH:MM:SS` of a time in seconds (rounded down)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class SalovaProcessor(ProcessorMixin):
    r"""
    Args:
        tokenizer: the LLM tokenizer; it must know `video_token`.
        query_tokenizer: the text tokenizer of the vision tower's dual encoder (the router query).
        chat_template: the LLM family's template (Qwen2.5, Llama-3.2, Phi-3.5) or the "plain" one of stages 1/1.5.
        num_latents, num_focus_segments: `connector_num_latents` and K of the model's config.
        image_size, resize_mode, image_mean, image_std: the vision tower's input (see `TOWER_PRESETS`).
        sampling_fps: frames per second fed to the model (SALOVA: 1).
        segmenter, max_frames_per_segment, max_segments, window_seconds, split_uncut_videos,
        tiling_threshold_std: the segment policy (see `segmentation.py`).
        detector_threshold, detector_min_content, detector_min_scene_len: AdaptiveDetector settings.
        query_max_length: router query tokens kept (SALOVA: 1024).
        max_frame_pixels: videos with larger frames are refused before decoding.
    """

    def __init__(
        self,
        tokenizer=None,
        query_tokenizer=None,
        chat_template=None,
        video_token: str = "<video>",
        num_latents: int = 256,
        num_focus_segments: int = 5,
        image_size: int = 384,
        resize_mode: str = "squash",
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        sampling_fps: float = 1.0,
        segmenter: str = "scenes",
        max_frames_per_segment: int = 2160,
        max_segments: int = 256,
        window_seconds: float = 30.0,
        split_uncut_videos: bool = False,
        tiling_threshold_std: float = 1.0,
        detector_threshold: float = 3.0,
        detector_min_content: float = 15.0,
        detector_min_scene_len: int = 15,
        query_max_length: int = 1024,
        max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
        **kwargs,
    ):
        self.video_token = video_token
        self.num_latents = num_latents
        self.num_focus_segments = num_focus_segments
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.sampling_fps = sampling_fps
        self.segmenter = segmenter
        self.max_frames_per_segment = max_frames_per_segment
        self.max_segments = max_segments
        self.window_seconds = window_seconds
        self.split_uncut_videos = split_uncut_videos
        self.tiling_threshold_std = tiling_threshold_std
        self.detector_threshold = detector_threshold
        self.detector_min_content = detector_min_content
        self.detector_min_scene_len = detector_min_scene_len
        self.query_max_length = query_max_length
        self.max_frame_pixels = max_frame_pixels
        self.frame_transform = FrameTransform(image_size, resize_mode)
        self.segmentation_policy = SegmentationPolicy(
            segmenter, max_frames_per_segment, max_segments, window_seconds, split_uncut_videos, tiling_threshold_std
        )
        super().__init__(tokenizer, query_tokenizer, chat_template=chat_template)
        if self.tokenizer.convert_tokens_to_ids(video_token) in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"The LLM tokenizer does not know the video placeholder {video_token!r}; add it first.")
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(video_token)

    def num_video_tokens(self, num_segments: int, num_focus_segments: int | None = None) -> int:
        """Placeholder tokens of one video: `num_latents · min(K, N_v) + N_v`."""
        k = self.num_focus_segments if num_focus_segments is None else num_focus_segments
        return self.num_latents * min(k, num_segments) + num_segments

    def process_video(
        self, video, video_fps: float | None = None, segment_boundaries: list[float] | None = None, progress=None
    ) -> tuple[DecodedVideo, list[Segment]]:
        """Decodes one video (scene cuts and sampled frames in one pass) and plans its segments.

        `segment_boundaries` (segment starts in seconds, e.g. a dataset's scenes) replace the segmenter; the
        detector is then not run.
        """
        detect = segment_boundaries is None and self.segmenter == "scenes"
        detector = (
            SceneCutDetector(self.detector_threshold, self.detector_min_content, self.detector_min_scene_len)
            if detect
            else None
        )
        decoded = decode_video(
            video,
            self.frame_transform,
            self.sampling_fps,
            cut_detector=detector,
            video_fps=video_fps,
            max_frame_pixels=self.max_frame_pixels,
            progress=progress,
        )
        segments = plan_segments(
            decoded.timestamps,
            decoded.duration,
            self.segmentation_policy,
            cut_times=decoded.cut_times,
            frames=decoded.frames,
            boundaries=segment_boundaries,
            name=decoded.name,
        )
        return decoded, segments

    def __call__(
        self,
        videos=None,
        text: str | list[str] | None = None,
        queries: str | list[str] | None = None,
        video_fps: float | None = None,
        segment_boundaries: list[list[float] | None] | None = None,
        num_focus_segments: int | None = None,
        padding: bool | str = True,
        add_special_tokens: bool = True,
        return_tensors: str | None = "pt",
        dtype: torch.dtype = torch.float32,
        progress: bool | None = None,
        **tokenizer_kwargs,
    ) -> BatchFeature:
        """One batch row per text; with `videos`, one video per row, placed at the row's `<video>` (or first).

        videos: a path, file object, `(T, H, W, 3)` array or list of PIL images (with `video_fps`), an image, or
            a list of these, one per text. A list of PIL images is one video when `video_fps` is given and a batch
            of images otherwise.
        text: the LLM prompt(s). queries: the router queries; by default each text without its placeholder.
        segment_boundaries: per video, segment starts in seconds that replace the segmenter (or `None`).

        Returns `input_ids`, `attention_mask`, `query_input_ids`, `query_attention_mask` and, with videos,
        `pixel_values_videos` `(F, 3, size, size)`, `frames_per_segment` `(S,)`, `segments_per_video` `(B,)` and
        `segment_times` `(S, 2)` (start and end seconds of each segment).
        """
        if text is None and videos is None:
            raise ValueError("SalovaProcessor needs text, videos, or both.")
        texts = [text] if isinstance(text, str) else list(text) if text is not None else None
        video_list = None if videos is None else list(videos) if _is_video_batch(videos, video_fps) else [videos]
        if texts is None:
            texts = [""] * len(video_list)
        if video_list is not None and len(video_list) != len(texts):
            raise ValueError(f"Got {len(video_list)} videos for {len(texts)} texts; pass one video per text.")
        query_list = self._queries(queries, texts)

        data = {}
        if video_list is None:
            for row, prompt in enumerate(texts):
                if self.video_token in prompt:
                    raise ValueError(f"Text {row} holds {self.video_token!r} but no video was given.")
            prompts = texts
        else:
            boundaries = segment_boundaries or [None] * len(video_list)
            if len(boundaries) != len(video_list):
                raise ValueError(f"segment_boundaries has {len(boundaries)} entries for {len(video_list)} videos.")
            processed = [
                self.process_video(video, video_fps, bounds, progress)
                for video, bounds in zip(video_list, boundaries, strict=True)
            ]
            data.update(self._video_tensors(processed, dtype))
            counts = data["segments_per_video"].tolist()
            prompts = [
                self._expand_placeholder(prompt, row, num_segments, num_focus_segments)
                for row, (prompt, num_segments) in enumerate(zip(texts, counts, strict=True))
            ]

        encoding = self.tokenizer(
            prompts, padding=padding, add_special_tokens=add_special_tokens, return_tensors="pt", **tokenizer_kwargs
        )
        if video_list is not None:
            self._check_expansion(encoding["input_ids"], data["segments_per_video"], num_focus_segments)
        query_encoding = self.query_tokenizer(
            query_list, padding=True, truncation=True, max_length=self.query_max_length, return_tensors="pt"
        )
        data.update(
            input_ids=encoding["input_ids"],
            attention_mask=encoding["attention_mask"],
            query_input_ids=query_encoding["input_ids"],
            query_attention_mask=query_encoding["attention_mask"],
        )
        if num_focus_segments is not None:
            data["num_focus_segments"] = num_focus_segments
        return BatchFeature(data=data, tensor_type=return_tensors)

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        return_dict: bool = True,
        video_fps: float | None = None,
        **processor_kwargs,
    ):
        """Renders conversations whose messages hold text and at most one video item per conversation.

        Content is a string or a list of `{"type": "text", "text": ...}` and `{"type": "video", "video"|"path": ...}`
        items (`"image"` items are one-frame videos). The video becomes `<video>\\n` where it stands; the router
        query is the text of the last user turn. With `tokenize=True` returns the processor's `BatchFeature`.
        """
        conversations = [conversation] if isinstance(conversation[0], dict) else list(conversation)
        template = chat_template or self.chat_template or self.tokenizer.chat_template
        if template is None:
            raise ValueError("No chat template: pass chat_template= or save one with the processor.")
        rendered, videos, queries = [], [], []
        for index, messages in enumerate(conversations):
            flat_messages, video, query = self._flatten_conversation(messages, index)
            rendered.append(
                self.tokenizer.apply_chat_template(
                    flat_messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
                )
            )
            videos.append(video)
            queries.append(query)
        if not tokenize:
            return rendered if len(rendered) > 1 or not isinstance(conversation[0], dict) else rendered[0]
        if any(video is None for video in videos) and not all(video is None for video in videos):
            raise ValueError("Either every conversation of a batch has a video or none has.")
        inputs = self(
            videos=None if videos[0] is None else videos,
            text=rendered,
            queries=queries,
            video_fps=video_fps,
            add_special_tokens=False,
            **processor_kwargs,
        )
        return inputs if return_dict else inputs["input_ids"]

    def describe_segments(self, inputs: BatchFeature, router_scores=None, selected_segments=None) -> list[list[dict]]:
        """Per video, one dict per segment: `start`/`end` as `HH:MM:SS`, seconds, frames and, when given, the
        router score and whether the segment was selected for focus."""
        times = inputs["segment_times"].tolist()
        frames = inputs["frames_per_segment"].tolist()
        descriptions, first = [], 0
        for row, count in enumerate(inputs["segments_per_video"].tolist()):
            chosen = set() if selected_segments is None else set(selected_segments[row].tolist())
            video = []
            for index in range(count):
                start, end = times[first + index]
                entry = {
                    "segment": index,
                    "start": format_timestamp(start),
                    "end": format_timestamp(end),
                    "start_seconds": start,
                    "end_seconds": end,
                    "frames": frames[first + index],
                }
                if router_scores is not None:
                    entry["score"] = float(router_scores[row, index])
                    entry["selected"] = index in chosen
                video.append(entry)
            descriptions.append(video)
            first += count
        return descriptions

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def _queries(self, queries, texts: list[str]) -> list[str]:
        if queries is None:
            query_list = [prompt.replace(self.video_token, "").strip() for prompt in texts]
        else:
            query_list = [queries] if isinstance(queries, str) else list(queries)
        if len(query_list) != len(texts):
            raise ValueError(f"Got {len(query_list)} queries for {len(texts)} texts; pass one query per text.")
        empty = [row for row, query in enumerate(query_list) if not query.strip()]
        if empty:
            raise ValueError(
                f"Rows {empty} have an empty router query: give a question in text= or queries= (the router ranks "
                "segments against it)."
            )
        return query_list

    def _video_tensors(self, processed: list[tuple[DecodedVideo, list[Segment]]], dtype) -> dict:
        frames, frames_per_segment, segment_times, segments_per_video = [], [], [], []
        for decoded, segments in processed:
            used = sum(segment.num_frames for segment in segments)
            frames.append(decoded.frames[:used])
            frames_per_segment += [segment.num_frames for segment in segments]
            segment_times += [(segment.start, segment.end) for segment in segments]
            segments_per_video.append(len(segments))
        return {
            "pixel_values_videos": normalize_frames(np.concatenate(frames), self.image_mean, self.image_std, dtype),
            "frames_per_segment": torch.tensor(frames_per_segment, dtype=torch.long),
            "segments_per_video": torch.tensor(segments_per_video, dtype=torch.long),
            "segment_times": torch.tensor(segment_times, dtype=torch.float64),
        }

    def _expand_placeholder(self, prompt: str, row: int, num_segments: int, num_focus_segments: int | None) -> str:
        found = prompt.count(self.video_token)
        if found > 1:
            raise ValueError(f"Text {row} holds {found} {self.video_token!r} placeholders; one video per row.")
        if found == 0:
            prompt = f"{self.video_token}\n{prompt}"
        return prompt.replace(
            self.video_token, self.video_token * self.num_video_tokens(num_segments, num_focus_segments)
        )

    def _check_expansion(self, input_ids: torch.Tensor, segments_per_video: torch.Tensor, num_focus_segments) -> None:
        found = (input_ids == self.video_token_id).sum(1).tolist()
        expected = [self.num_video_tokens(n, num_focus_segments) for n in segments_per_video.tolist()]
        if found != expected:
            raise ValueError(
                f"Video placeholders after tokenization {found} differ from the expected {expected}: truncation "
                "(max_length) cut into the video, or the tokenizer splits the placeholder token."
            )

    def _flatten_conversation(self, messages: list[dict], index: int):
        flat, video, query = [], None, None
        for message in messages:
            content = message.get("content", "")
            if isinstance(content, str):
                parts = [content]
            else:
                parts = []
                for item in content:
                    if isinstance(item, str):
                        parts.append(item)
                    elif not isinstance(item, dict):
                        raise ValueError(f"Conversation {index}: content items must be dicts or strings, got {item!r}.")
                    elif item.get("type") == "text":
                        parts.append(item["text"])
                    elif item.get("type") in ("video", "image"):
                        if video is not None:
                            raise ValueError(f"Conversation {index} holds more than one video; SALOVA takes one.")
                        video = next((item[key] for key in VIDEO_ITEM_KEYS if key in item), None)
                        if video is None:
                            raise ValueError(f"Conversation {index}: a video item needs one of {VIDEO_ITEM_KEYS}.")
                        parts.append(f"{self.video_token}\n")
                    else:
                        raise ValueError(f"Conversation {index}: unsupported content item type {item.get('type')!r}.")
            text = "".join(parts)
            if message["role"] == "user":
                query = text.replace(self.video_token, "").strip()
            flat.append({"role": message["role"], "content": text})
        if not flat:
            raise ValueError(f"Conversation {index} is empty.")
        return flat, video, query or ""


def _is_video_batch(videos, video_fps: float | None) -> bool:
    """Whether `videos` is a list of videos, as opposed to one video given as PIL frames with `video_fps`."""
    if not isinstance(videos, (list, tuple)) or not videos:
        return False
    return video_fps is None or not all(isinstance(item, Image.Image) for item in videos)

"""`SalovaProcessor`: videos and questions in, model-ready tensors and segment times out.

Three components, as in `InstructBlipVideoProcessor`: the `video_processor` (`SalovaVideoProcessor`: decoding,
scene cuts, segments, frames), the LLM `tokenizer` (it holds the `<video>` placeholder) and the `query_tokenizer`,
the SigLIP/CLIP text tokenizer of the router's query encoder. Each video's `<video>` placeholder is expanded to
`connector_num_latents · min(K, N_v) + N_v` tokens, the FocusFast layout of the model.

The settings the processor shares with the model go by the model config's names: K and the latents per segment
equal the model's, the segment limits and the query length stay within its tables. `follow_model_config` makes them
so, and loading a checkpoint checks them against its `config.json`.
"""

import json

from transformers import AutoConfig, BatchFeature
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.utils import CONFIG_NAME, cached_file
from transformers.video_processing_utils import VideoProcessorMixin

from .video_processing_salova import SalovaVideoProcessorKwargs, current_names, make_video_list

VIDEO_ITEM_KEYS = ("video", "url", "path", "image")
# Processor settings that equal the model config's, by its names.
MODEL_SETTINGS = ("connector_num_latents", "num_focus_segments")
# Video processor limits that stay within the model's tables (the router's segment positions, the connector's frames).
MODEL_LIMITS = ("router_max_segments", "max_frames_per_segment")
# Old setting names a saved processor_config.json may carry -> their current names.
RENAMED_SETTINGS = {"num_latents": "connector_num_latents"}
# What `from_pretrained` passes on to find and read the model config beside the processor's files.
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "trust_remote_code")

# Renders a message's content, a string or a list of items: a video (or image) item as its placeholder line, a
# text item (or a plain string) as its text. Templates written for string content call it in place of
# `message['content']`.
CONTENT_MACRO = """{{%- macro render_content(content) -%}}
{{%- if content is string -%}}{{{{ content }}}}{{%- else -%}}{{%- for item in content -%}}
{{%- if item is string -%}}{{{{ item }}}}
{{%- elif item['type'] in ['video', 'image'] -%}}{{{{ {placeholder!r} }}}}
{{%- elif item['type'] == 'text' -%}}{{{{ item['text'] }}}}{{%- endif -%}}
{{%- endfor -%}}{{%- endif -%}}
{{%- endmacro -%}}
"""


def with_list_content(template: str, video_token: str = "<video>") -> str:
    """A chat template written for string message content (`message['content']`), made to render content lists
    as well, the form `ProcessorMixin.apply_chat_template` passes on; a leading `bos_token` line stays first."""
    if "render_content(" in template or "message['content']" not in template:
        return template
    head, body = ("", template)
    if template.startswith("{{- bos_token -}}\n"):
        head, body = template.split("\n", 1)
        head += "\n"
    macro = CONTENT_MACRO.format(placeholder=f"{video_token}\n")
    return head + macro + body.replace("message['content']", "render_content(message['content'])")


def format_timestamp(seconds: float) -> str:
    """`HH:MM:SS.mmm` of a time in seconds (rounded down to the millisecond)."""
    millis = max(0, int(round(seconds * 1000, 6)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


class SalovaProcessorKwargs(ProcessingKwargs, total=False):
    videos_kwargs: SalovaVideoProcessorKwargs


class SalovaProcessor(ProcessorMixin):
    r"""
    Args:
        video_processor: a `SalovaVideoProcessor` (decoding, scene cuts, segment policy, frames).
        tokenizer: the LLM tokenizer; it must know `video_token`. Its `model_max_length` is the LLM's position
            table: a longer prompt is refused.
        query_tokenizer: the text tokenizer of the vision tower's dual encoder (the router query).
        chat_template: the LLM family's template (Qwen2.5, Llama-3.2, Phi-3.5) or the "plain" one of stages 1/1.5.
        video_token: the placeholder of a video in the text.
        connector_num_latents, num_focus_segments: latents per segment and K, the model config's.
        query_max_length: router query tokens kept (SALOVA: 1024), within the model's router and query encoder.
    """

    valid_processor_kwargs = SalovaProcessorKwargs
    # Prompts are left-padded so that batched generation continues every row right after its prompt.
    text_kwargs = {"padding": True, "padding_side": "left", "return_tensors": "pt"}

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        query_tokenizer=None,
        chat_template=None,
        video_token: str = "<video>",
        connector_num_latents: int = 256,
        num_focus_segments: int = 5,
        query_max_length: int = 1024,
        **kwargs,
    ):
        self.video_token = video_token
        self.connector_num_latents = connector_num_latents
        self.num_focus_segments = num_focus_segments
        self.query_max_length = query_max_length
        super().__init__(video_processor, tokenizer, query_tokenizer, chat_template=chat_template, **kwargs)
        if self.tokenizer.convert_tokens_to_ids(video_token) in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"The LLM tokenizer does not know the video placeholder {video_token!r}; add it first.")
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(video_token)

    @classmethod
    def from_dict(cls, processor_dict: dict, **kwargs):
        return super().from_dict(current_names(processor_dict, RENAMED_SETTINGS, cls.__name__), **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """The processor saved in a folder or Hub repository; where the model's `config.json` lies beside it, the
        settings shared with the model are checked against it (`check_model_config`)."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        lookup = {key: value for key, value in hub_kwargs.items() if key != "trust_remote_code"}
        if cached_file(
            pretrained_model_name_or_path, CONFIG_NAME, _raise_exceptions_for_missing_entries=False, **lookup
        ):
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            if config.model_type == "salova":
                processor.check_model_config(config, where=str(pretrained_model_name_or_path))
        return processor

    def follow_model_config(self, config) -> None:
        """Takes `MODEL_SETTINGS` from the model's config and brings the segment limits and `query_max_length`
        within its tables."""
        for name in MODEL_SETTINGS:
            setattr(self, name, getattr(config, name))
        for owner, name, limit in self._model_limits(config):
            setattr(owner, name, min(getattr(owner, name), limit))

    def check_model_config(self, config, where: str = "the processor") -> None:
        """Raises a `ValueError` naming both values where one of `MODEL_SETTINGS` differs from `config`'s, or a
        segment limit or `query_max_length` is over the model's table."""
        differing = [
            f"{name}={getattr(self, name)!r} (model config: {getattr(config, name)!r})"
            for name in MODEL_SETTINGS
            if getattr(self, name) != getattr(config, name)
        ]
        differing += [
            f"{name}={getattr(owner, name)!r} (model config: at most {limit})"
            for owner, name, limit in self._model_limits(config)
            if getattr(owner, name) > limit
        ]
        if differing:
            raise ValueError(
                f"{where}: the processor's settings differ from its model config's: {', '.join(differing)}. Save the "
                "processor with its model, or call processor.follow_model_config(model.config) first."
            )

    def _model_limits(self, config) -> list[tuple[object, str, int]]:
        """(owner, setting, the model's limit) of each setting bounded by a table of the model: the router's text
        table holds the pooled state besides the query tokens, and the query encoder has its own position table."""
        query_limit = min(config.router_max_query_tokens - 1, config.tower_config.text_config.max_position_embeddings)
        limits = [(self.video_processor, name, getattr(config, name)) for name in MODEL_LIMITS]
        return [*limits, (self, "query_max_length", query_limit)]

    def check_argument_for_proper_class(self, argument_name, argument):
        # transformers looks `VideoProcessorMixin` up through its video processor mapping, a torchvision-only
        # placeholder where torchvision is missing; check the video processor against the mixin directly.
        if argument_name != "video_processor":
            return super().check_argument_for_proper_class(argument_name, argument)
        if not isinstance(argument, VideoProcessorMixin):
            raise TypeError(f"video_processor must be a SalovaVideoProcessor, got a {type(argument).__name__}.")
        return VideoProcessorMixin

    @property
    def image_size(self) -> int:
        """The side of the square frames fed to the vision tower."""
        video_processor = self.video_processor
        crop = video_processor.crop_size if video_processor.do_center_crop else video_processor.size
        return crop["height"]

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + ["query_input_ids", "query_attention_mask"]
        return names + list(self.video_processor.model_input_names)

    def num_video_tokens(self, num_segments: int) -> int:
        """Placeholder tokens of one video: `connector_num_latents · min(K, N_v) + N_v`."""
        if not isinstance(self.num_focus_segments, int) or self.num_focus_segments < 1:
            raise ValueError(f"num_focus_segments must be a positive integer, got {self.num_focus_segments!r}.")
        return self.connector_num_latents * min(self.num_focus_segments, num_segments) + num_segments

    def __call__(
        self,
        videos=None,
        text: str | list[str] | None = None,
        queries: str | list[str] | None = None,
        video_fps: float | list[float | None] | None = None,
        segment_boundaries: list[list[float] | None] | None = None,
        segments_per_video: list[int] | None = None,
        **kwargs: Unpack[SalovaProcessorKwargs],
    ) -> BatchFeature:
        """One batch row per text; with `videos`, one video per row, placed at the row's `<video>` (or first).

        videos: a path, binary file object, decoded frames (an array, or PIL images with `video_fps`), an image, or
            a list of these, one per text. A list of PIL images is one video when `video_fps` is given and a batch
            of images otherwise.
        text: the LLM prompt(s). queries: the router queries; by default each text without its placeholder.
        video_fps: frame rate of decoded frames. segment_boundaries: per video, segment starts in seconds that
            replace the segmenter (or `None`).
        segments_per_video: instead of `videos`, the segment count of each row's video, for a video encoded before
            (a stored index): the text inputs come out alone, with the same placeholders as from the video.

        Returns `input_ids`, `attention_mask`, `query_input_ids`, `query_attention_mask` and, with videos,
        `pixel_values_videos` `(F, 3, size, size)`, `frames_per_segment` `(S,)`, `segments_per_video` `(B,)` and
        `segment_times` `(S, 2)` (start and end seconds of each segment).
        """
        if text is None and videos is None:
            raise ValueError("SalovaProcessor needs text, videos, or both.")
        if videos is not None and segments_per_video is not None:
            raise ValueError("Pass videos or segments_per_video, not both: the videos give their segment counts.")
        output_kwargs = self._merge_kwargs(
            SalovaProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        texts = [text] if isinstance(text, str) else list(text) if text is not None else None
        data, counts = {}, None
        if videos is not None:
            video_list = make_video_list(videos, video_fps)
            texts = [""] * len(video_list) if texts is None else texts
            if len(video_list) != len(texts):
                raise ValueError(
                    f"The number of {self.video_token} tokens in the prompts should be the same as the number of "
                    f"videos: one video per text, got {len(video_list)} videos for {len(texts)} texts."
                )
            data.update(
                self.video_processor(
                    video_list,
                    video_fps=video_fps,
                    segment_boundaries=segment_boundaries,
                    **output_kwargs["videos_kwargs"],
                )
            )
            counts = data["segments_per_video"].tolist()
        elif segments_per_video is not None:
            counts = [int(count) for count in segments_per_video]
            if len(counts) != len(texts) or min(counts) < 1:
                raise ValueError(
                    f"segments_per_video must hold one positive count per text ({len(texts)}), got {counts}."
                )
        query_list = self._queries(queries, texts)
        if counts is None:
            for row, prompt in enumerate(texts):
                if self.video_token in prompt:
                    raise ValueError(f"Text {row} holds {self.video_token!r} but no video was given.")
            prompts, replacement_offsets = texts, []
        else:
            prompts = [self._with_placeholder(prompt, row) for row, prompt in enumerate(texts)]
            video_inputs = {"segments_per_video": counts}
            prompts, replacement_offsets = self.get_text_with_replacements(
                prompts, videos_replacements=[self.replace_video_token(video_inputs, row) for row in range(len(counts))]
            )

        text_kwargs = output_kwargs["text_kwargs"]
        return_tensors = text_kwargs.pop("return_tensors", None)
        return_offsets = text_kwargs.pop(
            "return_text_replacement_offsets", output_kwargs.get("return_text_replacement_offsets")
        )
        return_mm_token_type_ids = text_kwargs.pop(
            "return_mm_token_type_ids", output_kwargs.get("return_mm_token_type_ids")
        )
        encoding = self.tokenizer(prompts, **text_kwargs)
        self._check_lengths(encoding["input_ids"], counts, truncated=bool(text_kwargs.get("truncation")))
        query_encoding = self.query_tokenizer(
            query_list, padding=True, truncation=True, max_length=self.query_max_length
        )
        data.update(encoding)
        data.update(query_input_ids=query_encoding["input_ids"], query_attention_mask=query_encoding["attention_mask"])
        if return_offsets:
            data["text_replacement_offsets"] = replacement_offsets
        if return_mm_token_type_ids:
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(encoding["input_ids"])
        return BatchFeature(data=data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """The placeholder run of video `video_idx`: `connector_num_latents · min(K, N_v) + N_v` video tokens."""
        return self.video_token * self.num_video_tokens(int(video_inputs["segments_per_video"][video_idx]))

    def describe_segments(self, inputs: BatchFeature, router_scores=None, selected_segments=None) -> list[list[dict]]:
        """Per video, one dict per segment: `start`/`end` as `HH:MM:SS.mmm`, seconds, frames and, when given, the
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

    def to_dict(self) -> dict:
        # `auto_map` says where the remote code lives; save_pretrained writes it, but it is no setting of the
        # processor: a processor compares equal whether it was loaded, saved or built from components.
        return {key: value for key, value in super().to_dict().items() if key != "auto_map"}

    def to_json_string(self) -> str:
        settings = self.to_dict()
        if getattr(self, "auto_map", None):
            settings["auto_map"] = self.auto_map
        return json.dumps(settings, indent=2, sort_keys=True) + "\n"

    def _multimodal_inputs_from_conversations(self, conversations, audio_loading_params, load_audio_from_video=False):
        """Per conversation, its one video (`"video"` items; an `"image"` item is a one-frame video) and its router
        query, the text of the last user turn. A video item without a source (no `video`/`url`/`path`) stands for
        a video encoded before: pass its segment count as `processor_kwargs={"segments_per_video": [N]}`."""
        batch_videos, queries = [], []
        for index, conversation in enumerate(conversations):
            videos, query = [], ""
            for message in conversation:
                content = message.get("content") or ""
                items = [content] if isinstance(content, str) else content
                items = [{"type": "text", "text": item} if isinstance(item, str) else item for item in items]
                for item in items:
                    if item.get("type") in ("video", "image"):
                        # One item may name its video under several keys (e.g. "video" and "path").
                        videos += [item[key] for key in VIDEO_ITEM_KEYS if key in item][:1]
                if message.get("role") == "user":
                    query = "".join(item.get("text", "") for item in items if item.get("type") == "text").strip()
            if len(videos) > 1:
                raise ValueError(f"Conversation {index} holds more than one video; SALOVA takes one.")
            batch_videos.append(videos)
            queries.append(query)
        return [[] for _ in conversations], batch_videos, [], {"queries": queries}

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

    def _with_placeholder(self, prompt: str, row: int) -> str:
        found = prompt.count(self.video_token)
        if found > 1:
            raise ValueError(f"Text {row} holds {found} {self.video_token!r} placeholders; one video per row.")
        return prompt if found else f"{self.video_token}\n{prompt}"

    def _check_lengths(self, input_ids: list[list[int]], counts: list[int] | None, truncated: bool) -> None:
        if counts is not None:
            found = [list(ids).count(self.video_token_id) for ids in input_ids]
            expected = [self.num_video_tokens(n) for n in counts]
            if found != expected:
                raise ValueError(
                    f"Video placeholders after tokenization {found} differ from the expected {expected}: truncation "
                    "(max_length) cut into the video, or the tokenizer splits the placeholder token."
                )
        limit = self.tokenizer.model_max_length
        lengths = [len(ids) for ids in input_ids]
        too_long = [row for row, length in enumerate(lengths) if length > limit]
        if too_long and not truncated:
            row = too_long[0]
            raise ValueError(
                f"Row {row}: the prompt is {lengths[row]} tokens, more than the LLM's {limit} positions "
                "(tokenizer.model_max_length); shorten the text, or give fewer segments or a smaller "
                "num_focus_segments."
            )


__all__ = ["SalovaProcessor", "SalovaProcessorKwargs", "format_timestamp", "with_list_content"]

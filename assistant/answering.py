"""`VideoAssistant`: questions about a video answered from its index, streamed, with the focus scenes and times.

One assistant holds a model, its processor and an index cache. `open(video)` loads or builds the video's index;
`ask(conversation, ...)` routes the last question over the stored routing tokens, feeds the selected focus latents
to the LLM, and streams the answer. The video is decoded and encoded once, however many questions follow.
"""

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from salova.assistant.index import IndexCache, SalovaVideoIndex
from salova.processing import format_timestamp
from transformers import AutoModelForImageTextToText, AutoProcessor, TextIteratorStreamer


@dataclass
class Scene:
    index: int
    start: float
    end: float
    score: float
    focus: bool

    @property
    def span(self) -> str:
        return f"{format_timestamp(self.start)}-{format_timestamp(self.end)}"


@dataclass
class Answer:
    """text: the generated answer. scenes: every segment with its router score, focus ones flagged.
    index: `"built"` or `"reused"`. seconds: `index`, `first_token` and `total`, each from the question's start."""

    text: str
    scenes: list[Scene]
    index: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def focus_scenes(self) -> list[Scene]:
        return [scene for scene in self.scenes if scene.focus]

    def as_json(self) -> dict:
        return {
            "answer": self.text,
            "scenes": [
                {"index": s.index, "start": s.start, "end": s.end, "score": s.score, "focus": s.focus}
                for s in self.scenes
            ],
            "index": self.index,
            "seconds": self.seconds,
        }


class VideoAssistant:
    def __init__(self, model, processor, cache: IndexCache | None = None):
        self.model = model.eval()
        self.processor = processor
        self.cache = cache or IndexCache()

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, index_dir: str | Path | None = None) -> "VideoAssistant":
        if not Path(model_dir).is_dir() or not (Path(model_dir) / "config.json").is_file():
            raise FileNotFoundError(f"--model {model_dir}: not a checkpoint folder (no config.json in it).")
        model = AutoModelForImageTextToText.from_pretrained(model_dir, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
        return cls(model, processor, IndexCache(index_dir))

    def open(self, video: str | Path, reindex: bool = False, index_file: str | Path | None = None, progress=True):
        """`(index, "built" | "reused", seconds)` of `video` for this model."""
        return self.cache.get_or_build(self.model, self.processor, video, reindex, index_file, progress)

    def conversation(self, video: str | Path, questions: list[str], answers: list[str]) -> list[dict]:
        """Chat messages: the video with the first question, then alternating answers and questions."""
        if len(questions) != len(answers) + 1:
            raise ValueError(
                f"{len(questions)} questions for {len(answers)} answers: the last turn must be a question."
            )
        messages = [
            {"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": questions[0]}]}
        ]
        for answer, question in zip(answers, questions[1:], strict=True):
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        return messages

    def ask(
        self,
        index: SalovaVideoIndex,
        messages: list[dict],
        top_k: int | None = None,
        max_new_tokens: int = 64,
        on_text: Callable[[str], None] | None = None,
        index_status: str = "reused",
        index_seconds: float = 0.0,
    ) -> Answer:
        """Answers the last user turn of `messages` (greedy), calling `on_text` with each piece as it streams."""
        started = time.perf_counter() - index_seconds
        top_k = self.model.config.num_focus_segments if top_k is None else top_k
        if top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {top_k}.")
        question = _last_user_text(messages)
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        processor = self.processor
        if top_k != processor.num_focus_segments:
            processor = copy.copy(processor)  # K sets the prompt's placeholder count
            processor.num_focus_segments = top_k
        inputs = processor(
            text=prompt,
            queries=question,
            segments_per_video=[index.num_segments],
            add_special_tokens=False,
            return_tensors="pt",
        ).to(self.model.device)
        inputs.update(index.model_inputs(self.model.device, self.model.dtype), num_focus_segments=top_k)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure = []

        def generate():
            try:
                with torch.no_grad():
                    self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer)
            except BaseException as error:  # re-raised in the caller's thread
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        pieces, first_token = [], None
        for piece in streamer:
            if first_token is None and piece:
                first_token = time.perf_counter() - started
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        worker.join()
        if failure:
            raise failure[0]
        # The router alone (query encoder + attention over N routing tokens) costs little next to generation.
        with torch.no_grad():
            routing = self.model.route_segments(
                inputs["video_latents"],
                inputs["video_routing_tokens"],
                inputs["segments_per_video"],
                inputs["query_input_ids"],
                inputs["query_attention_mask"],
                num_focus_segments=top_k,
            )
        total = time.perf_counter() - started
        scores, selected = routing.router_scores[0], routing.selected_segments[0]
        focus = set(selected[selected >= 0].tolist())
        times = index.segment_times.tolist()
        scenes = [Scene(i, times[i][0], times[i][1], float(scores[i]), i in focus) for i in range(index.num_segments)]
        seconds = {
            "index": index_seconds,
            "first_token": first_token if first_token is not None else total,
            "total": total,
        }
        return Answer("".join(pieces).strip(), scenes, index_status, {k: round(v, 3) for k, v in seconds.items()})


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(item["text"] for item in content if isinstance(item, dict) and item.get("type") == "text")
    raise ValueError("The conversation has no user turn to answer.")


def ask_with_index(model_dir: str | Path, video: str | Path, questions: list[str], index_dir=None) -> list[str]:
    """Printable lines: each question answered through the video's index, its focus scenes and both times.

    The first question builds (or reuses) the index; the later ones reuse it.
    """
    assistant = VideoAssistant.from_pretrained(model_dir, index_dir)
    lines = []
    for number, question in enumerate(questions):
        index, status, index_seconds = assistant.open(video, progress=False)
        answer = assistant.ask(
            index, assistant.conversation(video, [question], []), index_status=status, index_seconds=index_seconds
        )
        lines.append(f"Q{number + 1}: {question}")
        lines.append(f"A{number + 1}: {answer.text}")
        lines += [f"    focus {scene.span}  score {scene.score:+.3f}" for scene in answer.focus_scenes]
        seconds = answer.seconds
        lines.append(
            f"    index {answer.index} in {seconds['index']:.2f} s, first token {seconds['first_token']:.2f} s, "
            f"total {seconds['total']:.2f} s"
        )
    return lines

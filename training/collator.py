"""Batches of training rows -> model inputs, with LM labels on every assistant turn and router targets per query.

Videos are decoded here (in the data-loader workers), through the processor, with the row's segment starts (from
the data check) as the segment boundaries, so each retrieval label stays on its segment. With `video_cache_mb`,
a video processed once is kept (least recently used out first) for the later rows and epochs that segment it the
same way: with persistent data-loader workers, a corpus that fits is decoded once per worker.

Length: a row longer than `max_length` tokens loses whole exchanges (a user turn and its answers), the oldest first
after the first exchange, which carries the video and stays; a row whose first exchange alone does not fit fails
(below). Video placeholders are never cut. A dropped exchange takes its router query with it: its retrieval labels
leave the `L_sim` targets and the focus labels become the maximum over the turns kept.

A row that fails here (a video that decodes badly past the data check, segments that differ from the check's, a
row over `max_length`) is left out of its batch: a copy of another row would be that row's negative in stage 1's
in-batch retrieval targets. When no row of the batch assembles, the batch is one copy of the first row of
`fallback_rows` that does, with every label masked, so every process of a distributed run still takes the same
steps. The reasons are logged and counted in the batch (`data_replaced_rows`, `data_trimmed_rows`), which the
trainer sums into its logs.
"""

import json
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import torch
from salova.training.data import RecordError

logger = logging.getLogger(__name__)

COUNT_KEYS = ("data_replaced_rows", "data_trimmed_rows")


@dataclass
class SalovaCollator:
    """`processor`: a `SalovaProcessor`; `chat_template`: the stage's template (e.g. the `plain` one), or None for
    the processor's own; `max_length`: LLM tokens per row (None: unbounded); `fallback_rows`: rows to draw a
    stand-in from when a whole batch fails (the training dataset); `video_cache_mb`: processed videos kept in memory
    for reuse, up to this many MiB of tensors (0: none)."""

    processor: object
    chat_template: str | None = None
    max_length: int | None = None
    fallback_rows: object = None
    video_cache_mb: float = 0
    failures: Counter = field(default_factory=Counter)
    _videos: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)
    _cached_bytes: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        for name in ("tokenizer", "query_tokenizer"):
            tokenizer = getattr(self.processor, name)
            if tokenizer.pad_token_id is None:
                raise ValueError(
                    f"The processor's {name} has no pad token, and batches are padded: give it one (salova build "
                    "sets the LLM's; see hub_configs.builder.ensure_pad_token)."
                )

    def __call__(self, rows: list[dict]) -> dict:
        parts = [part for part in map(self._try_assemble, rows) if part is not None]
        replaced = len(rows) - len(parts)
        parts = parts or [self._fallback()]
        batch = self._batch(parts)
        batch["data_replaced_rows"] = torch.tensor(replaced)
        batch["data_trimmed_rows"] = torch.tensor(sum(part["trimmed"] for part in parts))
        return batch

    def _try_assemble(self, row: dict) -> dict | None:
        try:
            return self._assemble(row)
        except (RecordError, ValueError, RuntimeError, OSError) as error:
            reason = getattr(error, "reason", type(error).__name__)
            self.failures[reason] += 1
            logger.warning("%s: row left out of its batch: %s", row.get("origin", row["id"]), error)
            return None

    def _fallback(self) -> dict:
        for row in self.fallback_rows or []:
            part = self._try_assemble(row)
            if part is not None:
                return _masked(part)
        raise RecordError("no row of the batch nor of the fallback rows could be assembled; see the warnings above.")

    def _assemble(self, row: dict) -> dict:
        """One row: its video processed, prompt and answer pieces tokenized, labels checked against segments."""
        processor = self.processor
        messages = json.loads(row["messages"])
        video = self._video(row["video"], row["boundaries"])
        num_segments = int(video["segments_per_video"][0])
        encoded = processor(
            text=[self._render(messages[:1], generation_prompt=True)],
            queries=row["queries"][:1],
            segments_per_video=[num_segments],
            add_special_tokens=False,
        )
        encoded.update(video)
        query_labels = json.loads(row["query_labels"])
        focus_labels = json.loads(row["focus_labels"])
        if query_labels is not None and len(focus_labels) != num_segments:
            raise RecordError(
                f"the video gave {num_segments} segments where the data check planned {len(focus_labels)}",
                "segments differ from the data check",
            )
        pieces = self._pieces(messages)
        prompt_ids = encoded["input_ids"][0][encoded["attention_mask"][0].bool()]
        exchanges = sorted({exchange for _, _, exchange in pieces})
        kept = list(exchanges)
        length = len(prompt_ids) + sum(len(ids) for ids, _, _ in pieces)
        while self.max_length is not None and length > self.max_length:
            if len(kept) < 2:
                raise RecordError(
                    f"{length} tokens with its first exchange alone, over max_length={self.max_length}",
                    "row over max_length",
                )
            oldest = kept.pop(1)
            length -= sum(len(ids) for ids, _, exchange in pieces if exchange == oldest)
            pieces = [piece for piece in pieces if piece[2] != oldest]
        dropped = set(exchanges) - set(kept)
        queries = row["queries"]
        if dropped:
            # In a conversation, query i is user turn i's: the queries of dropped exchanges go with them.
            queries = [query for index, query in enumerate(queries) if index not in dropped]
            if query_labels is not None:
                query_labels = [labels for index, labels in enumerate(query_labels) if index not in dropped]
                focus_labels = [max(column) for column in zip(*query_labels, strict=True)]
        return {
            "encoded": encoded,
            "input_ids": torch.cat([prompt_ids, *[ids for ids, _, _ in pieces]]),
            "supervised": torch.cat(
                [torch.zeros(len(prompt_ids), dtype=torch.bool)]
                + [torch.full((len(ids),), labelled) for ids, labelled, _ in pieces]
            ),
            "queries": queries,
            "query_labels": query_labels,
            "focus_labels": focus_labels,
            "trimmed": bool(dropped),
        }

    def _video(self, path: str, boundaries: list[float] | None) -> dict:
        """The video processor's tensors of `path` segmented at `boundaries`, from the cache when there."""
        key = (path, None if boundaries is None else tuple(boundaries))
        if key in self._videos:
            self._videos.move_to_end(key)
            return self._videos[key]
        video = dict(self.processor.video_processor(videos=[path], segment_boundaries=[boundaries]))
        size = sum(tensor.nbytes for tensor in video.values())
        budget = self.video_cache_mb * 2**20
        if size <= budget:
            self._videos[key] = video
            self._cached_bytes += size
            while self._cached_bytes > budget:
                _, dropped = self._videos.popitem(last=False)
                self._cached_bytes -= sum(tensor.nbytes for tensor in dropped.values())
        return video

    def _render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=generation_prompt
        )

    def _pieces(self, messages: list[dict]) -> list[tuple[torch.Tensor, bool, int]]:
        """Token pieces after the first prompt: `[answer 1, (prompt 2, answer 2), ...]`, answers supervised, each
        the difference between renderings of the conversation up to and after it, with its exchange: the index of
        the user turn it belongs to (0 for the first)."""
        tokenizer = self.processor.tokenizer
        pieces, rendered = [], self._render(messages[:1], generation_prompt=True)
        user_turns = [message["role"] == "user" for message in messages]
        for end in range(1, len(messages)):
            if messages[end]["role"] == "assistant":
                text = self._render(messages[: end + 1])
            elif end + 1 < len(messages):
                text = self._render(messages[: end + 1], generation_prompt=True)
            else:
                continue
            if not text.startswith(rendered):
                raise RecordError(
                    "the chat template renders the conversation's start differently once a turn follows",
                    "chat template not prefix-stable",
                )
            ids = tokenizer(text[len(rendered) :], add_special_tokens=False)["input_ids"]
            exchange = sum(user_turns[: end + 1]) - 1
            pieces.append((torch.tensor(ids, dtype=torch.long), messages[end]["role"] == "assistant", exchange))
            rendered = text
        return pieces

    def _batch(self, parts: list[dict]) -> dict:
        tokenizer = self.processor.tokenizer
        length = max(len(part["input_ids"]) for part in parts)
        input_ids = torch.full((len(parts), length), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, part in enumerate(parts):
            ids = part["input_ids"]
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
            labels[row, : len(ids)] = ids.masked_fill(~part["supervised"], -100)
        encodings = [part["encoded"] for part in parts]
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "query_input_ids": _pad(
                [e["query_input_ids"][0] for e in encodings], self.processor.query_tokenizer.pad_token_id
            ),
            "query_attention_mask": _pad([e["query_attention_mask"][0] for e in encodings], 0),
        }
        for key in ("pixel_values_videos", "frames_per_segment", "segments_per_video", "segment_times"):
            batch[key] = torch.cat([e[key] for e in encodings])
        if any(part["query_labels"] is not None for part in parts):
            batch.update(self._router_targets(parts, batch["segments_per_video"]))
        return batch

    def _router_targets(self, parts: list[dict], segments_per_video: torch.Tensor) -> dict:
        """The model's router targets: focus labels `(S,)`; `(B, N)` targets of each row's first query with the
        mask of the rows that have labels; the extra queries of labelled rows, tokenized, with their row and
        `(Q, N)` targets."""
        width = int(segments_per_video.max())
        focus, first_labels, first_mask = [], torch.zeros(len(parts), width), torch.zeros(len(parts), dtype=torch.bool)
        extra_queries, extra_rows, extra_labels = [], [], []
        for row, (part, count) in enumerate(zip(parts, segments_per_video.tolist(), strict=True)):
            if part["query_labels"] is None:
                focus.append(torch.zeros(count))
                continue
            focus.append(torch.tensor(part["focus_labels"], dtype=torch.float32))
            labels = torch.tensor(part["query_labels"], dtype=torch.float32)
            first_labels[row, :count] = labels[0]
            first_mask[row] = True
            for query, query_labels in zip(part["queries"][1:], labels[1:], strict=True):
                extra_queries.append(query)
                extra_rows.append(row)
                extra_labels.append(torch.nn.functional.pad(query_labels, (0, width - count)))
        targets = {"segment_labels": torch.cat(focus), "query_labels": first_labels, "query_label_mask": first_mask}
        if extra_queries:
            processor = self.processor
            encoding = processor.query_tokenizer(
                extra_queries, padding=True, truncation=True, max_length=processor.query_max_length, return_tensors="pt"
            )
            targets.update(
                extra_query_input_ids=encoding["input_ids"],
                extra_query_attention_mask=encoding["attention_mask"],
                extra_query_rows=torch.tensor(extra_rows),
                extra_query_labels=torch.stack(extra_labels),
            )
        return targets


def _masked(part: dict) -> dict:
    """A stand-in row: the same inputs, nothing supervised, no router target."""
    return {**part, "supervised": torch.zeros_like(part["supervised"]), "query_labels": None, "trimmed": False}


def _pad(sequences: list[torch.Tensor], value: int) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=value)

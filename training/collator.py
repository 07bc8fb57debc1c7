"""Batches of training rows -> model inputs, with LM labels on the response tokens only.

Videos are decoded here (in the data-loader workers), through the processor, with the record's scenes as the
segment boundaries so that each retrieval label stays on its scene.
"""

import json
from dataclasses import dataclass

import torch

from .data import RecordError


@dataclass
class SalovaCollator:
    """`processor`: a `SalovaProcessor`; `chat_template`: the stage's template (e.g. the `plain` one), or None for
    the processor's own."""

    processor: object
    chat_template: str | None = None

    def __call__(self, rows: list[dict]) -> dict:
        processor = self.processor
        prompts, responses = [], []
        for row in rows:
            messages = json.loads(row["messages"])
            prompt = processor.apply_chat_template(
                messages, chat_template=self.chat_template, add_generation_prompt=True
            )
            full = processor.apply_chat_template(
                [*messages, {"role": "assistant", "content": row["response"]}], chat_template=self.chat_template
            )
            if not full.startswith(prompt):
                raise RecordError(f"record {row['id']}: the chat template renders the prompt differently with a reply.")
            prompts.append(prompt)
            responses.append(full[len(prompt) :])
        batch = processor(
            videos=[row["video"] for row in rows],
            text=prompts,
            queries=[row["query"] for row in rows],
            segment_boundaries=[row["boundaries"] for row in rows],
            add_special_tokens=False,
        )
        batch.update(self._append_responses(batch, responses))
        labels = [row["segment_labels"] for row in rows]
        if all(label is not None for label in labels):
            batch["segment_labels"] = self._segment_labels(rows, labels, batch["segments_per_video"])
        return dict(batch)

    def _append_responses(self, batch, responses: list[str]) -> dict:
        tokenizer = self.processor.tokenizer
        prompt_ids = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
        response_ids = [torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in responses]
        length = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True))
        input_ids = torch.full((len(responses), length), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, (prompt, response) in enumerate(zip(prompt_ids, response_ids, strict=True)):
            end = len(prompt) + len(response)
            input_ids[row, :end] = torch.cat([prompt, response])
            attention_mask[row, :end] = 1
            labels[row, len(prompt) : end] = response
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    @staticmethod
    def _segment_labels(rows, labels, segments_per_video) -> torch.Tensor:
        for row, row_labels, count in zip(rows, labels, segments_per_video.tolist(), strict=True):
            if len(row_labels) != count:
                raise RecordError(
                    f"record {row['id']}: {len(row_labels)} scenes have labels but the video gave {count} segments "
                    "(a scene shorter than the sampling step, or longer than the temporal table); fix the scenes."
                )
        return torch.tensor([value for row_labels in labels for value in row_labels], dtype=torch.float32)

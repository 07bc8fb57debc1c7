"""Tokenizers made on the spot: the tiny variant's small byte-level BPE, and the twins' (published layouts).

Byte-level, so any text tokenizes; its merges are learned from a vocabulary of colours, shapes, motions,
numbers and question words, the words the synthetic videos and questions of this package use.
"""

import itertools
import json

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VIDEO_TOKEN = "<video>"
END_OF_TURN = "<|im_end|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", END_OF_TURN, VIDEO_TOKEN]
# Qwen2.5-style chat template: the tiny variant's LLM is a Qwen2.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = {
    "colours": "red green blue yellow orange purple white black pink cyan brown grey",
    "shapes": "circle square triangle star ring cross bar dot diamond",
    "motions": "moves left right up down spins grows shrinks stays still bounces",
    "numbers": "one two three four five six seven eight nine ten zero",
    "questions": "what which when where how many colour shape scene video the a is in of does do show shows",
}


def _corpus():
    words = " ".join(_WORDS.values()).split()
    for size in (1, 2, 3):
        for combination in itertools.islice(itertools.product(words, repeat=size), 20000):
            yield " ".join(combination)


def build_tiny_tokenizer(vocab_size: int = 512, with_video_token: bool = True) -> PreTrainedTokenizerFast:
    """The tiny LLM tokenizer; `with_video_token=False` stands in for an LLM tokenizer that lacks `<video>`."""
    special_tokens = SPECIAL_TOKENS if with_video_token else [t for t in SPECIAL_TOKENS if t != VIDEO_TOKEN]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special_tokens[1:],
        chat_template=CHAT_TEMPLATE,
    )


def build_layout_tokenizer(layout: dict, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A tokenizer with a published tokenizer's layout (`hub_configs/components/*.json`, key `tokenizer`): its length,
    its special tokens at their ids, its bos/eos/pad/unk tokens and its length limit.

    The merges are the tiny tokenizer's (byte level, so any text tokenizes); the other ordinary ids are fillers that
    text never produces. `reserved_special_tokens` (`first_id`, `last_id`, a `name` with `{}`) numbers the special
    ids a layout reserves without naming them one by one.
    """
    special = dict(layout["special_tokens"])
    reserved = layout.get("reserved_special_tokens")
    if reserved:
        free = [i for i in range(reserved["first_id"], reserved["last_id"] + 1) if i not in special.values()]
        special.update({reserved["name"].format(index): token_id for index, token_id in enumerate(free)})
    trained = json.loads(build_tiny_tokenizer(with_video_token=False).backend_tokenizer.to_str())["model"]
    ordinary = [token for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1])]
    ordinary = [token for token in ordinary if token not in special]
    by_id = {token_id: token for token, token_id in special.items()}
    vocab, next_ordinary = {}, iter(ordinary)
    for token_id in range(layout["vocab_size"]):
        vocab[by_id.get(token_id) or next(next_ordinary, f"<|filler_{token_id}|>")] = token_id
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(merge) for merge in trained["merges"]]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    named = {key: layout.get(key) for key in ("bos_token", "eos_token", "pad_token", "unk_token") if layout.get(key)}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=layout["model_max_length"],
        chat_template=chat_template,
        **named,
    )

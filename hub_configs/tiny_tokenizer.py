"""A small byte-level BPE tokenizer trained on the spot, for the tiny variant (no download needed).

Byte-level, so any text tokenizes; its merges are learned from a vocabulary of colours, shapes, motions,
numbers and question words, the words the synthetic videos and questions of this package use.
"""

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
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

"""`--model salova` for lmms-eval 0.7: `python -m lmms_eval --model salova --model_args pretrained=CKPT --tasks ...`.

Requests are grouped by their visual (the video path, or the document for an in-memory image), so a task's
questions about one video decode and encode it once (`salova.evaluation.answering.VideoAnswerer`). `generate_until`
follows the task's `generation_kwargs` (greedy unless they sample); `loglikelihood` scores a continuation as the
assistant's answer, for lmms-eval's multiple-choice tasks.
"""

from collections import defaultdict

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from salova.evaluation.answering import VideoAnswerer
from tqdm.auto import tqdm

from salova.cli import DTYPES

# lmms-eval's generation_kwargs that `generate` takes as they are.
GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "num_beams", "do_sample")


class Salova(lmms):
    """model_args: `pretrained` (checkpoint folder), `max_new_tokens` (default when the task gives none),
    `dtype` (float32, bfloat16, float16). lmms-eval's `batch_size` and `device` are accepted; SALOVA answers one
    question at a time on the CPU or on the checkpoint's device."""

    def __init__(
        self, pretrained: str, max_new_tokens: int = 16, dtype: str = "float32", batch_size=1, device=None, **kwargs
    ):
        super().__init__()
        if kwargs:
            raise ValueError(
                f"Unknown --model_args for salova: {sorted(kwargs)}; expected pretrained, max_new_tokens, dtype."
            )
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
        self.answerer = VideoAnswerer.from_pretrained(pretrained, int(max_new_tokens), DTYPES[dtype])
        if device not in (None, "", "cpu"):
            self.answerer.model.to(device)
        self.batch_size_per_gpu = int(batch_size)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        results = [None] * len(requests)
        with tqdm(total=len(requests), desc="salova: answering", disable=self.rank != 0) as bar:
            for encoded, members in self._by_visual(requests):
                for index, (context, gen_kwargs) in members:
                    options = {key: gen_kwargs[key] for key in GENERATION_KEYS if key in gen_kwargs}
                    if not options.get("do_sample") and "temperature" in options:
                        options.pop("temperature")  # greedy: a temperature of 0 means no sampling
                    text = self.answerer.answer(encoded, context, **options).text
                    for stop in _stop_strings(gen_kwargs):
                        text = text.split(stop)[0]
                    results[index] = text
                    self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                    bar.update()
        return results

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """`(loss, is greedy)` per request, the loss being the continuation's mean negative log-likelihood per
        token: lmms-eval's multiple-choice scoring picks the choice of lowest first value (`argmin`), as its own
        models return the LM loss there. Its evaluator passes every output through `unwrap_generation_output`,
        which turns a bare tuple into its string; a `GenerationResult` carries the tuple through untouched."""
        results = [None] * len(requests)
        with tqdm(total=len(requests), desc="salova: scoring", disable=self.rank != 0) as bar:
            for encoded, members in self._by_visual(requests):
                for index, (context, continuation) in members:
                    score = self.answerer.loglikelihood(encoded, context, continuation)
                    scored = (-score.log_prob / score.num_tokens, score.is_greedy)
                    self.cache_hook.add_partial("loglikelihood", (context, continuation), scored)
                    results[index] = GenerationResult(text=scored)
                    bar.update()
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("salova answers single-turn questions; multi-round tasks are not supported.")

    def _by_visual(self, requests: list[Instance]):
        """Yields `(EncodedVideo, [(request index, (context, second argument))])` per distinct visual."""
        groups, visuals = defaultdict(list), {}
        for index, request in enumerate(requests):
            context, second, doc_to_visual, doc_id, task, split = request.args
            visual = doc_to_visual(self.task_dict[task][split][doc_id])
            if not visual or len(visual) != 1:
                raise ValueError(
                    f"salova takes exactly one video or image per question; {task} document {doc_id} gives "
                    f"{len(visual or [])} visuals."
                )
            key = visual[0] if isinstance(visual[0], str) else (task, split, doc_id)
            visuals[key] = visual[0]
            groups[key].append((index, (context, second)))
        for key, members in groups.items():
            yield self.answerer.encode(visuals[key]), members


def _stop_strings(gen_kwargs: dict) -> list[str]:
    until = gen_kwargs.get("until") or []
    return [until] if isinstance(until, str) else [stop for stop in until if stop]

"""`--model salova` for lmms-eval 0.7: `python -m lmms_eval --model salova --model_args pretrained=CKPT --tasks ...`.

Requests are grouped by their visual (the video path, or the document for an in-memory image), so a task's
questions about one video decode and encode it once, and every question is answered through the answering core
(`salova.assistant.VideoAssistant`). `generate_until` follows the task's `generation_kwargs` (greedy unless they
sample) and stops at its `until` strings; `loglikelihood` scores a continuation as the assistant's answer, for
lmms-eval's multiple-choice tasks.
"""

from collections import defaultdict

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from salova.assistant import VideoAssistant
from tqdm.auto import tqdm

from salova.cli import DTYPES


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
        self.assistant = VideoAssistant.from_pretrained(pretrained, dtype=DTYPES[dtype])
        self.max_new_tokens = int(max_new_tokens)
        if device not in (None, "", "cpu"):
            self.assistant.model.to(device)
        self.batch_size_per_gpu = int(batch_size)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        results = [None] * len(requests)
        with tqdm(total=len(requests), desc="salova: answering", disable=self.rank != 0) as bar:
            for encoded, members in self._by_visual(requests):
                for index, (context, gen_kwargs) in members:
                    messages = self.assistant.conversation(None, [context], [])
                    text = self.assistant.ask(encoded, messages, **self._generation_options(gen_kwargs)).text
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
                    messages = self.assistant.conversation(None, [context], [])
                    score = self.assistant.score(encoded, messages, continuation)
                    scored = (-score.log_prob / score.num_tokens, score.is_greedy)
                    self.cache_hook.add_partial("loglikelihood", (context, continuation), scored)
                    results[index] = GenerationResult(text=scored)
                    bar.update()
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("salova answers single-turn questions; multi-round tasks are not supported.")

    def _generation_options(self, gen_kwargs: dict) -> dict:
        """`VideoAssistant.ask`'s options from a task's `generation_kwargs`: greedy unless `do_sample` with a
        temperature above 0, `until` as stop strings."""
        if int(gen_kwargs.get("num_beams", 1)) != 1:
            raise ValueError(
                f"salova decodes greedily or samples; num_beams={gen_kwargs['num_beams']} is not supported."
            )
        sampling = bool(gen_kwargs.get("do_sample")) and float(gen_kwargs.get("temperature") or 0) > 0
        until = gen_kwargs.get("until") or []
        return {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            "temperature": float(gen_kwargs["temperature"]) if sampling else 0.0,
            "top_p": float(gen_kwargs.get("top_p") or 1.0) if sampling else 1.0,
            "stop": [until] if isinstance(until, str) else [stop for stop in until if stop],
        }

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
            yield self.assistant.encode(visuals[key]), members

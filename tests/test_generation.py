"""generate() on the tiny variant with a video: the decoding strategies transformers' GenerationTesterMixin covers
(that mixin is only in transformers' GitHub repository, not in the sdist the conformance module fetches)."""

import copy

import pytest
import torch
from conftest import make_batch

NEW_TOKENS = 5


@pytest.fixture(scope="module")
def prompt(tiny):
    batch = make_batch(tiny[0].config, [[2, 3, 1, 2]], seed=3)
    batch.pop("labels")
    return batch


def _greedy(model, batch, **kwargs):
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)


def test_greedy_with_and_without_cache(tiny, prompt):
    model, _ = tiny
    cached = _greedy(model, prompt)
    assert cached.shape == (1, prompt["input_ids"].shape[1] + NEW_TOKENS)
    assert torch.equal(cached, _greedy(model, prompt, use_cache=False))


def test_greedy_follows_the_argmax_of_the_logits(tiny, prompt):
    model, _ = tiny
    generated = _greedy(model, prompt, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        first = model(**prompt).logits[:, -1]
    assert generated.sequences[0, prompt["input_ids"].shape[1]].item() == first.argmax(-1).item()
    assert torch.allclose(generated.logits[0], first, atol=1e-5)


def test_sampling_is_seeded(tiny, prompt):
    model, _ = tiny
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        with torch.no_grad():
            runs.append(model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=True, top_k=50, temperature=1.5))
    assert torch.equal(*runs)


def test_beam_search_with_one_beam_is_greedy(tiny, prompt):
    model, _ = tiny
    assert torch.equal(_greedy(model, prompt, num_beams=1), _greedy(model, prompt))
    with torch.no_grad():
        beams = model.generate(
            **prompt, max_new_tokens=NEW_TOKENS, num_beams=3, num_return_sequences=3, do_sample=False
        )
    assert beams.shape[0] == 3


def test_assisted_and_prompt_lookup_decoding_equal_greedy(tiny, prompt):
    model, _ = tiny
    greedy = _greedy(model, prompt)
    assistant = copy.deepcopy(model)
    assert torch.equal(_greedy(model, prompt, assistant_model=assistant), greedy)
    assert torch.equal(_greedy(model, prompt, prompt_lookup_num_tokens=2), greedy)


def _continue_from_cache(model, prompt, **cache_argument) -> torch.Tensor:
    """Generates 2 tokens, then 3 more from the returned cache (no video the second time)."""
    with torch.no_grad():
        first = model.generate(
            **prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False, return_dict_in_generate=True
        )
        sequences = first.sequences
        return model.generate(
            input_ids=sequences,
            attention_mask=torch.ones_like(sequences),
            **{name: first.cache for name in cache_argument},
            max_new_tokens=NEW_TOKENS - 2,
            min_new_tokens=NEW_TOKENS - 2,
            do_sample=False,
        )


def test_cache_continuation(tiny, prompt):
    """Generating 2 then 3 more tokens from the returned cache equals generating 5."""
    model, _ = tiny
    assert torch.equal(_continue_from_cache(model, prompt, cache=True), _greedy(model, prompt))


def test_past_key_values_still_continues_with_a_deprecation_warning(tiny, prompt):
    """The name transformers used before `cache` keeps working for callers written against it, and says so."""
    model, _ = tiny
    with pytest.warns(FutureWarning, match="past_key_values"):
        continued = _continue_from_cache(model, prompt, past_key_values=True)
    assert torch.equal(continued, _greedy(model, prompt))


def test_static_cache_equals_dynamic_cache(tiny, prompt):
    model, _ = tiny
    assert torch.equal(_greedy(model, prompt, cache_implementation="static"), _greedy(model, prompt))


def test_generate_from_inputs_embeds_with_a_video(tiny, prompt):
    model, _ = tiny
    video = {k: v for k, v in prompt.items() if k not in ("input_ids",)}
    embeds = model.get_input_embeddings()(prompt["input_ids"])
    with torch.no_grad():
        from_embeds = model.generate(
            inputs_embeds=embeds, **video, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )
    # Without input_ids, generate() returns only the new tokens.
    assert torch.equal(from_embeds, _greedy(model, prompt)[:, prompt["input_ids"].shape[1] :])


@pytest.mark.slow
def test_decoding_without_a_video_compiles_to_one_graph(tiny, prompt):
    """A decode step (and an exported `generate`) sees placeholders only as text: no data-dependent branch."""
    model, _ = tiny
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    text = {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"], "use_cache": False}
    with torch.no_grad():
        assert torch.allclose(compiled(**text).logits, model(**text).logits, atol=1e-5)


@pytest.mark.slow
def test_text_path_exports(tiny, prompt):
    """torch.export of the forward a decoding step runs (no video): no data-dependent branch on the placeholders."""
    model, _ = tiny
    text = {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"], "use_cache": False}
    exported = torch.export.export(model, args=(), kwargs=text, strict=False)
    with torch.no_grad():
        assert torch.allclose(exported.module()(**text).logits, model(**text).logits, atol=1e-5)

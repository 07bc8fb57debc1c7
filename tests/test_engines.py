"""The training engines: what each needs of the model, and the shipped accelerate configs run as a user runs them."""

import copy

import pytest
import torch
from conftest import make_batch
from safetensors.torch import load_file, save_file
from salova.modeling import SalovaForConditionalGeneration
from transformers import AutoModel

SEGMENTS = [[3, 1, 2, 4, 2, 1, 2], [2, 5]]


def test_every_parameter_can_be_broadcast_as_bytes(tiny):
    """DeepSpeed's start-up broadcast sends each parameter as `p.data.view(torch.uint8)`, which a 0-dim tensor
    cannot give."""
    model, _ = tiny
    for name, parameter in model.named_parameters():
        assert parameter.dim() >= 1, f"{name} is 0-dim"
        parameter.data.view(torch.uint8)


def test_a_checkpoint_with_a_0_dim_logit_scale_loads_and_answers_the_same(tiny, tmp_path):
    model = copy.deepcopy(tiny[0])
    with torch.no_grad():
        model.model.router.logit_scale.fill_(2.5)  # not the initial value, so a re-initialised scale shows
    batch = make_batch(model.config, SEGMENTS, seed=0)
    with torch.no_grad():
        expected = model(**batch).router_scores
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.router.logit_scale"] = weights["model.router.logit_scale"].reshape(())
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    loaded, loading = SalovaForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing, unexpected or mismatched weights
    assert loaded.model.router.logit_scale.tolist() == [2.5]
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**batch).router_scores, expected)
    base = AutoModel.from_pretrained(tmp_path)  # the same key without the `model.` prefix
    assert base.router.logit_scale.tolist() == [2.5]

    state = model.state_dict()
    state["model.router.logit_scale"] = torch.tensor(1.5)
    model.load_state_dict(state)  # the Trainer's way into a checkpoint
    assert model.model.router.logit_scale.tolist() == [1.5]

    loaded.save_pretrained(tmp_path / "resaved")
    assert load_file(tmp_path / "resaved" / "model.safetensors")["model.router.logit_scale"].shape == (1,)

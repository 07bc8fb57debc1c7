"""How fast the tiny connector learns to carry shape and motion into its focus latents, per initialisation.

A diagnostic for the end-to-end run: the LLM can only answer what the focus latents carry. Scenes of the synthetic
corpus go through the tiny vision tower (random, frozen) once; then a fresh `SpatioTemporalConnector` and a small
MLP head on its flattened focus latents train to classify each scene's shape and motion (4 classes each),
and held-out scenes (the `eval` split) are scored every 500 steps. Three initialisations run side by side on the
same features, data order and head: the tiny variant's (`connector_position_init_std`, fan-in scaled linear layers,
`connector_attention_init_gain` 5 on queries and keys), the same without the attention gain (lucidrains' resampler),
and transformers' generic one (every linear layer and both position tables at std 0.02).

    python benchmarks/connector_learnability.py [--steps 3000] [--workdir /tmp/salova-learnability]
"""

import argparse
import copy
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from salova.hub_configs import build_salova
from salova.modeling.connector import SpatioTemporalConnector
from salova.training.synthetic_corpus import MOTIONS, SHAPES, CorpusSettings, generate_corpus

RESULTS = Path(__file__).parent / "results"
CAPTION = re.compile(r"a \w+ (?P<shape>\w+) moves (?P<motion>\w+) in the \w+ scene")


@torch.no_grad()
def scene_features(model, processor, records_path: Path) -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
    """(frame tokens `(T, P, d_v)`, frame summaries `(T, d_v)`, shape index, motion index) of every scene."""
    scenes, seen = [], set()
    for line in records_path.read_text().splitlines():
        record = json.loads(line)
        if record["video"] in seen:
            continue
        seen.add(record["video"])
        inputs = processor(
            videos=str(records_path.parent / record["video"]),
            text=processor.video_token,
            queries="scene",
            segment_boundaries=[[scene["start"] for scene in record["scenes"][1:]]],
        )
        tokens, summaries, _ = model.model.encode_frames(inputs["pixel_values_videos"])
        lengths = inputs["frames_per_segment"].tolist()
        for scene, frames, summary in zip(
            record["scenes"], tokens.split(lengths), summaries.split(lengths), strict=True
        ):
            match = CAPTION.fullmatch(scene["caption"])
            scenes.append((frames, summary, SHAPES.index(match["shape"]), MOTIONS.index(match["motion"])))
    return scenes


def generic_init(connector: SpatioTemporalConnector) -> None:
    for module in connector.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.02)
    torch.nn.init.normal_(connector.spatial_embedding, std=0.02)
    torch.nn.init.normal_(connector.temporal_embedding, std=0.02)


def train_and_score(model_class, config, train, held_out, init, steps: int, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    if init == "no gain":
        config = copy.deepcopy(config)
        config.connector_attention_init_gain = 1.0
    connector = model_class(config).model.connector  # initialised by the model's `_init_weights`
    if init == "generic":
        generic_init(connector)
    head = torch.nn.Sequential(
        torch.nn.Linear(config.connector_num_latents * config.hidden_width, 128),
        torch.nn.GELU(),
        torch.nn.Linear(128, len(SHAPES) + len(MOTIONS)),
    )
    optimizer = torch.optim.AdamW([*connector.parameters(), *head.parameters()], lr=1e-3)

    def logits(scenes):
        frames = torch.nn.utils.rnn.pad_sequence([scene[0] for scene in scenes], batch_first=True)
        summaries = torch.nn.utils.rnn.pad_sequence([scene[1] for scene in scenes], batch_first=True)
        mask = torch.arange(frames.shape[1]) < torch.tensor([len(scene[0]) for scene in scenes])[:, None]
        out = head(connector(frames, summaries, mask)[:, 1:].flatten(1))
        return out[:, : len(SHAPES)], out[:, len(SHAPES) :]

    targets = {name: torch.tensor([scene[i] for scene in held_out]) for i, name in ((2, "shape"), (3, "motion"))}
    curve = []
    for step in range(1, steps + 1):
        batch = [train[i] for i in torch.randint(len(train), (16,)).tolist()]
        shape_logits, motion_logits = logits(batch)
        loss = F.cross_entropy(shape_logits, torch.tensor([s[2] for s in batch])) + F.cross_entropy(
            motion_logits, torch.tensor([s[3] for s in batch])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == steps:
            with torch.no_grad():
                connector.eval()
                shape_logits, motion_logits = logits(held_out)
                connector.train()
            curve.append(
                {
                    "step": step,
                    "shape": round((shape_logits.argmax(-1) == targets["shape"]).float().mean().item(), 3),
                    "motion": round((motion_logits.argmax(-1) == targets["motion"]).float().mean().item(), 3),
                }
            )
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--workdir", default="/tmp/salova-learnability")
    args = parser.parse_args()
    corpus = generate_corpus(
        args.workdir, CorpusSettings(stage1_clips=1, stage15_videos=1, stage2_videos=128, eval_videos=24)
    )
    model, processor = build_salova("tiny")
    train = scene_features(model.eval(), processor, corpus["stage2"])
    held_out = scene_features(model, processor, corpus["eval"])
    print(
        f"{len(train)} training scenes, {len(held_out)} held-out scenes; "
        f"chance: shape {1 / len(SHAPES):.3f}, motion {1 / len(MOTIONS):.3f}"
    )
    results = {"training_scenes": len(train), "held_out_scenes": len(held_out)}
    for init in ("package", "no gain", "generic"):
        results[init] = train_and_score(type(model), model.config, train, held_out, init, args.steps)
        print(init.ljust(8), "  ".join(f"{p['step']}: {p['shape']:.2f}/{p['motion']:.2f}" for p in results[init]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "connector_learnability.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

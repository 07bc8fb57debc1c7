"""A published variant at full size on CPU, against the tiny variant in the same run: one question about a 2-minute
clip, answered greedily.

Each variant runs in its own process, built with random weights (`build_salova(..., random_weights=True)`: the
published architecture, full depth) in bf16, and reports its parameter count, its peak resident memory (the process's
maximum RSS, model build included), the prefill time (processor output in place to the first new token: vision tower,
connector, router and the LLM over the prompt) and the decode rate (new tokens after the first, per second). The clip
is the real `bikes.mp4` (10 s, six scenes) played twelve times over, written once into the results folder.

    python benchmarks/real_size.py [--variants tiny 3b] [--new-tokens 16] [--device cpu]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
SOURCE_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-videos" / "bikes.mp4"
QUESTION = "What happens in the scene with the most riders?"


def two_minute_clip(folder: Path) -> Path:
    """`bikes.mp4` twelve times over (120 s), written once."""
    import av

    from salova.video_writer import write_video

    path = folder / "bikes_x12.mp4"
    if not path.is_file():
        with av.open(str(SOURCE_CLIP)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        write_video(path, frames * 12, fps=fps)
    return path


class _Clock:
    """A logits processor that notes when each new token is chosen."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def measure(variant: str, clip: str, new_tokens: int, device: str) -> dict:
    from salova.hub_configs import build_salova
    from transformers import LogitsProcessorList

    started = time.perf_counter()
    model, processor = build_salova(variant, random_weights=True, dtype=torch.bfloat16)
    model = model.to(device).eval()
    built = time.perf_counter() - started
    inputs = processor(videos=clip, text=QUESTION, return_tensors="pt").to(device)
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(torch.bfloat16)
    clock = _Clock()
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            logits_processor=LogitsProcessorList([clock]),
        )
    generated = output.shape[1] - inputs["input_ids"].shape[1]
    decode_seconds = clock.times[-1] - clock.times[0]
    return {
        "variant": variant,
        "device": device,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "build_seconds": round(built, 1),
        "frames": int(inputs["frames_per_segment"].sum()),
        "segments": int(inputs["segments_per_video"][0]),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "prefill_seconds": round(clock.times[0] - start, 2),
        "new_tokens": generated,
        "tokens_per_second": round((len(clock.times) - 1) / decode_seconds, 2) if decode_seconds > 0 else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["tiny", "3b"])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.clip, args.new_tokens, args.device)))
        return
    RESULTS.mkdir(exist_ok=True)
    clip = two_minute_clip(RESULTS)
    rows = []
    for variant in args.variants:
        command = [sys.executable, __file__, "--measure", variant, "--clip", str(clip)]
        command += ["--new-tokens", str(args.new_tokens), "--device", args.device]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            rows.append({"variant": variant, "error": result.stderr.strip().splitlines()[-1]})
        else:
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    (RESULTS / f"real_size_{args.device}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

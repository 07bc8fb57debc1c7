"""Peak memory of one SALOVA forward for 60, 600 and 3600 frames (1, 10 and 60 minutes at 1 FPS).

Each measurement runs in its own process: the peak resident memory (VmHWM, reset just before the call)
reached during one no-grad forward, minus the resident memory just before it (model and inputs in place).
Two settings run side by side: frames through the vision tower in chunks of `vision_chunk_size` (the package
default) and in one pass (chunk = all frames). The bounded-memory claim is that the chunked overhead above the stored
per-frame features stays flat as the video grows: at 3600 frames at most 1.2x the overhead at 600 frames (printed as
`overhead 3600 / 600`). The tiny variant is used with the paper's 256 latents, so the LLM visual-token count is the
real one: 256 * min(K, N_v) + N_v.

What grew with the video length was `encode_frames` itself: it kept a list of per-chunk outputs and concatenated them
at the end, so for a moment it held the per-frame features twice (the list and the concatenation), an overhead
proportional to the frame count. It now writes each chunk into outputs allocated once, so the features are held once
and the overhead is the vision tower's activations for one chunk plus the connector, router and LLM, whose inputs do
not grow with the video (one routing token per segment, K focus segments).

    python benchmarks/long_video_memory.py [--frames 60 600 3600] [--segment-frames 60]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def measure(num_frames: int, segment_frames: int, chunk_size: int | None) -> dict:
    from salova.hub_configs import build_salova

    model, _ = build_salova("tiny")
    model.config.connector_num_latents = 256
    model = type(model)(model.config).eval()
    config = model.config
    config.vision_chunk_size = chunk_size or num_frames
    segments = [segment_frames] * (num_frames // segment_frames) + (
        [num_frames % segment_frames] if num_frames % segment_frames else []
    )
    size = config.vision_config.image_size
    visual_tokens = config.num_video_tokens(len(segments))
    input_ids = torch.full((1, visual_tokens + 8), 10)
    input_ids[0, 2 : 2 + visual_tokens] = config.video_token_id
    batch = {
        "input_ids": input_ids,
        "pixel_values_videos": torch.randn(num_frames, 3, size, size),
        "frames_per_segment": torch.tensor(segments),
        "segments_per_video": torch.tensor([len(segments)]),
        "query_input_ids": torch.randint(10, 400, (1, 12)),
    }
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak-RSS watermark
    start = _status_kib("VmRSS")
    with torch.no_grad():
        model(**batch)
    peak = _status_kib("VmHWM")
    features = num_frames * config.tokens_per_frame * config.vision_hidden_size * 4
    return {
        "frames": num_frames,
        "segments": len(segments),
        "vision_chunk_size": config.vision_chunk_size,
        "peak_above_start_mib": (peak - start) / 1024,
        "stored_features_mib": features / 2**20,
        "llm_visual_tokens": visual_tokens,
        "formula": f"256 * min({config.num_focus_segments}, {len(segments)}) + {len(segments)}",
    }


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[60, 600, 3600])
    parser.add_argument("--segment-frames", type=int, default=60)
    parser.add_argument("--measure", nargs=2, type=int, help=argparse.SUPPRESS)  # frames, chunk (0 = all)
    args = parser.parse_args()
    if args.measure:
        frames, chunk = args.measure
        print(json.dumps(measure(frames, args.segment_frames, chunk or None)))
        return

    rows = []
    for frames in args.frames:
        for chunk in (16, 0):
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    str(frames),
                    str(chunk),
                    "--segment-frames",
                    str(args.segment_frames),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    header = ("frames", "segments", "chunk", "peak MiB", "features MiB", "overhead MiB")
    print(" ".join(f"{name:>12}" for name in header), " LLM visual tokens")
    for row in rows:
        overhead = row["peak_above_start_mib"] - row["stored_features_mib"]
        row["overhead_mib"] = overhead
        cells = (row["frames"], row["segments"], row["vision_chunk_size"])
        sizes = (row["peak_above_start_mib"], row["stored_features_mib"], overhead)
        print(
            " ".join(f"{cell:>12}" for cell in cells),
            " ".join(f"{size:>12.1f}" for size in sizes),
            f" {row['llm_visual_tokens']} = {row['formula']}",
        )
    by_mode = {
        mode: [r for r in rows if (r["vision_chunk_size"] == 16) == (mode == "chunked")]
        for mode in ("chunked", "one pass")
    }
    for mode, mode_rows in by_mode.items():
        # The flatness goal compares 3600 with 600 frames (10 and 60 minutes); other runs compare first and last.
        first = next((row for row in mode_rows if row["frames"] == 600), mode_rows[0])
        last = mode_rows[-1]
        print(
            f"{mode}: peak {last['frames']} / {first['frames']} frames = "
            f"{last['peak_above_start_mib'] / first['peak_above_start_mib']:.2f}x, overhead "
            f"{last['frames']} / {first['frames']} = {last['overhead_mib'] / first['overhead_mib']:.2f}x"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_video_memory.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

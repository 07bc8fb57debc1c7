"""A first question about a video against a later one answered from its index, side by side in one run.

With the tiny model, for a 10-minute 1280x720 video with many cuts (made by `processor_speed.py`'s generator and
cached in `benchmarks/results/`) and for the real clips:

1. time to first answer, the whole path file -> processor -> model -> first token, split by stage:
   `hash` (the file's content hash for the index's provenance), `decode` (one decode pass: cuts, 1 FPS frames,
   segments), `encode` (vision tower + ST-Connector: `get_video_features`), `store` (thumbnails + the index file),
   each a stage of `build_index` called on its own, `route` (query encoder + router, timed on its own),
   `first_token` (prompt, prefill with routing, and the first generated token) and `answer` (the whole greedy
   answer); beside it, a bare PyAV decode of every frame of the file (`processor_speed.bare_decode`, the floor)
   timed right before, so that `decode` reads as a ratio to the floor
   whatever the machine's speed that minute;
2. a later question: the index loaded from disk (file hashed again) and the question answered from it;
3. the ratios first / later, to the first token and to the whole answer;
4. the index's size per hour of video, measured on the tiny model and computed for the 7B variant's width
   (SigLIP-so400m, 1152, with 256 latents per segment, bfloat16).

    python benchmarks/requery.py [--minutes 10] [--max-new-tokens 16]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import av
import torch
from processor_speed import REAL_VIDEOS, RESULTS, bare_decode, ensure_long_video
from salova.assistant import IndexCache, SalovaVideoIndex, VideoAssistant
from salova.assistant.index import THUMBNAIL_HEIGHT, current_provenance, decode_video, encode_frames
from salova.hub_configs import build_salova
from salova.modeling import SalovaConfig

QUESTIONS = ("When does the bright box cross the frame?", "What colour is the box in the last scene?")
# google/siglip-so400m-patch14-384's hidden_size: the 7B variant's latent and routing-token width.
WIDTH_7B = 1152
BYTES_7B = 2  # bfloat16


def first_question(assistant: VideoAssistant, video: Path, max_new_tokens: int) -> tuple[dict, SalovaVideoIndex]:
    """The whole path from the file, `build_index`'s stages timed one by one; the index is stored as `ask` would
    store it."""
    model, processor = assistant.model, assistant.processor
    stages = {}
    started = time.perf_counter()
    provenance = current_provenance(model, processor, video)
    stages["hash"] = time.perf_counter() - started

    mark = time.perf_counter()
    frames = decode_video(processor, str(video), thumbnail_height=THUMBNAIL_HEIGHT)
    stages["decode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    encoded = encode_frames(model, frames)
    stages["encode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    index = SalovaVideoIndex.from_encoded(encoded, frames["segment_thumbnails"], video, provenance, processor)
    index.save(assistant.cache.path_for(provenance))
    stages["store"] = time.perf_counter() - mark

    messages = assistant.conversation(video, [QUESTIONS[0]], [])
    inputs = assistant.inputs(index, messages)
    routing = ("video_latents", "video_routing_tokens", "segments_per_video", "query_input_ids", "query_attention_mask")
    mark = time.perf_counter()
    with torch.no_grad():
        model.route_segments(*(inputs[name] for name in routing))
    stages["route"] = time.perf_counter() - mark

    before_answer = time.perf_counter() - started
    answer = assistant.ask(
        index, messages, max_new_tokens=max_new_tokens, index_status="built", index_seconds=before_answer
    )
    stages["first_token"] = answer.seconds["first_token"] - before_answer
    stages["answer"] = answer.seconds["total"] - before_answer
    return {"stages": stages, "first_token": answer.seconds["first_token"], "total": answer.seconds["total"]}, index


def later_question(assistant: VideoAssistant, video: Path, max_new_tokens: int) -> dict:
    index, status, seconds = assistant.open(video, progress=False)
    if status != "reused":
        raise RuntimeError(f"{video}: the index stored by the first question was not reused.")
    messages = assistant.conversation(video, [QUESTIONS[1]], [])
    answer = assistant.ask(index, messages, max_new_tokens=max_new_tokens, index_status=status, index_seconds=seconds)
    return {"index_load": seconds, "first_token": answer.seconds["first_token"], "total": answer.seconds["total"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--later-repeats", type=int, default=3, help="later questions per video (median reported)")
    args = parser.parse_args()
    av.logging.set_level(av.logging.ERROR)
    RESULTS.mkdir(exist_ok=True)
    long_video = ensure_long_video(args.minutes, args.fps)

    model, processor = build_salova("tiny", seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        assistant = VideoAssistant(model, processor, IndexCache(folder))
        for video in [long_video, *sorted(REAL_VIDEOS.glob("*.mp4"))]:
            with video.open("rb") as file:  # in the page cache, as the first question's hash leaves it for its decode
                while file.read(1 << 24):
                    pass
            mark = time.perf_counter()
            bare_decode(video)
            bare_decode_s = time.perf_counter() - mark
            first, index = first_question(assistant, video, args.max_new_tokens)
            later = [later_question(assistant, video, args.max_new_tokens) for _ in range(args.later_repeats)]
            later = {name: statistics.median(run[name] for run in later) for name in later[0]}
            index_bytes = assistant.cache.path_for(index.provenance).stat().st_size
            tensor_bytes = index.latents.nbytes + index.routing_tokens.nbytes
            rows.append(
                {
                    "video": video.name,
                    "duration_s": round(index.duration, 2),
                    "segments": index.num_segments,
                    "first": {
                        "stages": {k: round(v, 3) for k, v in first["stages"].items()},
                        "first_token_s": round(first["first_token"], 3),
                        "total_s": round(first["total"], 3),
                        "bare_decode_s": round(bare_decode_s, 3),
                        "decode_over_bare_decode": round(first["stages"]["decode"] / bare_decode_s, 2),
                    },
                    "later": {f"{k}_s": round(v, 3) for k, v in later.items()},
                    "ratio_first_token": round(first["first_token"] / later["first_token"], 1),
                    "ratio_total": round(first["total"] / later["total"], 1),
                    "index_bytes": index_bytes,
                    "index_mb_per_hour_tiny": round(index_bytes / index.duration * 3600 / 1e6, 2),
                    "index_mb_per_hour_7b": round(
                        index_size_7b(index, processor.video_processor.router_max_segments) / 1e6, 1
                    ),
                    "tensor_share": round(tensor_bytes / index_bytes, 3),
                }
            )
            row = rows[-1]
            stages = "  ".join(f"{name} {seconds:.2f}" for name, seconds in row["first"]["stages"].items())
            print(
                f"{row['video']:<34} {row['duration_s']:>7.1f} s  {row['segments']:>3} segments | first: {stages} "
                f"(bare decode {row['first']['bare_decode_s']:.2f} s, decode ÷ bare "
                f"{row['first']['decode_over_bare_decode']:.2f}) -> first token {row['first']['first_token_s']:.2f} s, "
                f"answer {row['first']['total_s']:.2f} s | "
                f"later: index {row['later']['index_load_s']:.3f} s, first token {row['later']['first_token_s']:.3f} s,"
                f" answer {row['later']['total_s']:.3f} s | ratio {row['ratio_first_token']:.1f}x to first token, "
                f"{row['ratio_total']:.1f}x to answer | index {row['index_mb_per_hour_tiny']:.2f} MB/h tiny, "
                f"{row['index_mb_per_hour_7b']:.1f} MB/h 7B",
                flush=True,
            )
    (RESULTS / "requery.json").write_text(json.dumps(rows, indent=2) + "\n")


def index_size_7b(index: SalovaVideoIndex, max_segments: int) -> float:
    """Bytes of one hour's index at the 7B width: the measured segments per hour (at most `max_segments` per
    video), each with `connector_num_latents + 1` tokens of width 1152 in bfloat16, plus the same thumbnails."""
    segments_per_hour = min(max_segments, index.num_segments / index.duration * 3600)
    per_segment = (SalovaConfig.connector_num_latents + 1) * WIDTH_7B * BYTES_7B
    thumbnail = index.thumbnails[0].numel()
    return segments_per_hour * (per_segment + thumbnail)


if __name__ == "__main__":
    main()

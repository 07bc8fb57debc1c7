"""The assistant's `salova` subcommands: `scenes`, `index`, `ask`, `chat` and `app`.

`add_commands(subparsers)` registers them; each parser carries its handler as `args.run`.
"""

import argparse
import json
import sys
from pathlib import Path

from salova.processing import format_timestamp

QUIT_WORDS = {"exit", "quit", ":q"}


def add_commands(commands) -> None:
    scenes = commands.add_parser("scenes", help="a video's scenes as the processor segments it (no model)")
    scenes.add_argument("video")
    scenes.add_argument("--model", help="checkpoint whose processor settings to use (default: the package's)")
    scenes.add_argument("--json", action="store_true", help='print {"video", "duration", "scenes": [...]}')
    scenes.set_defaults(run=run_scenes)

    index = commands.add_parser("index", help="build and store the index of one or more videos")
    _add_model_arguments(index)
    index.add_argument("videos", nargs="+", metavar="VIDEO")
    index.set_defaults(run=run_index)

    ask = commands.add_parser("ask", help="ask one question about a video (its index is built once, then reused)")
    _add_model_arguments(ask)
    ask.add_argument("video")
    ask.add_argument("question")
    _add_answer_arguments(ask)
    ask.add_argument("--json", action="store_true", help='print {"answer", "scenes", "index", "seconds"} only')
    ask.add_argument("--timeline", metavar="PNG", help="also draw the router scores and focus scenes to this file")
    ask.set_defaults(run=run_ask)

    chat = commands.add_parser("chat", help="a multi-turn chat about one video, read from standard input")
    _add_model_arguments(chat)
    chat.add_argument("video")
    _add_answer_arguments(chat)
    chat.set_defaults(run=run_chat)

    app = commands.add_parser("app", help="the web app (needs the `app` extra: pip install 'salova[app]')")
    _add_model_arguments(app, reindex=False)
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--videos", nargs="*", default=[], help="videos to offer as examples")
    app.set_defaults(run=run_app)


def _add_model_arguments(parser: argparse.ArgumentParser, reindex: bool = True) -> None:
    parser.add_argument("--model", required=True, help="SALOVA checkpoint folder")
    parser.add_argument(
        "--index-dir", help="index cache folder (default: $SALOVA_INDEX_DIR or ~/.cache/salova/indexes)"
    )
    if reindex:
        parser.add_argument("--index", dest="index_file", help="use this index file instead of the cache's")
        parser.add_argument("--reindex", action="store_true", help="rebuild the index even when one is stored")


def _add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=int, help="focus scenes fed to the LLM (default: the model's K)")
    parser.add_argument("--max-new-tokens", type=int, default=64)


def run_scenes(args) -> None:
    decoded, segments = _video_processor(args.model).process_video(args.video)
    if args.json:
        scenes = [{"start": s.start, "end": s.end, "frames": s.num_frames} for s in segments]
        print(json.dumps({"video": args.video, "duration": decoded.duration, "scenes": scenes}))
        return
    print(f"{args.video}: {format_timestamp(decoded.duration)} ({decoded.duration:.3f} s), {len(segments)} scenes")
    for number, segment in enumerate(segments):
        print(
            f"{number:4d}  {format_timestamp(segment.start)} - {format_timestamp(segment.end)}  "
            f"({segment.start:9.3f} s - {segment.end:9.3f} s)  {segment.num_frames} frames"
        )


def run_index(args) -> None:
    assistant = _assistant(args)
    for video in args.videos:
        index, status, seconds = assistant.open(video, args.reindex, args.index_file)
        where = args.index_file or assistant.cache.path_for(index.provenance)
        print(f"{video}: index {status} in {seconds:.2f} s, {index.num_segments} segments -> {where}")


def run_ask(args) -> None:
    assistant = _assistant(args)
    index, status, seconds = assistant.open(args.video, args.reindex, args.index_file)
    stream = None if args.json else _print_piece
    messages = assistant.conversation(args.video, [args.question], [])
    answer = assistant.ask(index, messages, args.top_k, args.max_new_tokens, stream, status, seconds)
    if args.timeline:
        from salova.assistant.timeline import draw_timeline

        draw_timeline(answer, index, args.question, args.timeline)
    if args.json:
        print(json.dumps(answer.as_json()))
        return
    print()
    _print_summary(answer)
    if args.timeline:
        print(f"timeline: {args.timeline}")


def run_chat(args) -> None:
    assistant = _assistant(args)
    index, status, seconds = assistant.open(args.video, args.reindex, args.index_file)
    print(
        f"{args.video}: index {status} in {seconds:.2f} s, {index.num_segments} scenes. Ask away (empty line or "
        "'exit' ends).",
        flush=True,
    )
    questions, answers = [], []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip() or line.strip().lower() in QUIT_WORDS:
            break
        questions.append(line.strip())
        print("salova> ", end="", flush=True)
        messages = assistant.conversation(args.video, questions, answers)
        answer = assistant.ask(index, messages, args.top_k, args.max_new_tokens, _print_piece, status, seconds)
        print()
        _print_summary(answer)
        answers.append(answer.text)
        status, seconds = "reused", 0.0


def run_app(args) -> None:
    try:
        from salova.assistant.app import launch_app
    except ImportError as error:
        raise SystemExit(f"salova app needs gradio: pip install 'salova[app]' ({error}).") from error
    launch_app(_assistant(args), args.videos, args.host, args.port)


def _assistant(args):
    from salova.assistant.answering import VideoAssistant

    return VideoAssistant.from_pretrained(args.model, args.index_dir)


def _video_processor(model_dir: str | None):
    """The checkpoint's `SalovaVideoProcessor`, or one with the package's default settings."""
    if model_dir is None:
        from salova.processing import SalovaVideoProcessor

        return SalovaVideoProcessor()
    from transformers import AutoProcessor

    if not (Path(model_dir) / "processor_config.json").is_file():
        raise SystemExit(f"--model {model_dir}: no processor_config.json there; is it a SALOVA checkpoint?")
    return AutoProcessor.from_pretrained(model_dir, trust_remote_code=True).video_processor


def _print_piece(piece: str) -> None:
    print(piece, end="", flush=True)


def _print_summary(answer) -> None:
    for scene in answer.focus_scenes:
        print(f"  focus scene {scene.index}: {scene.span}  score {scene.score:+.3f}")
    seconds = answer.seconds
    print(
        f"  index {answer.index} ({seconds['index']:.2f} s), first token {seconds['first_token']:.2f} s, "
        f"total {seconds['total']:.2f} s",
        flush=True,
    )

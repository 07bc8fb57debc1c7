"""The assistant's `salova` subcommands: `scenes`, `index`, `ask`, `chat`, `app` and `serve`.

`add_commands(subparsers)` registers them; each parser carries its handler as `args.run`.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from salova.processing import format_timestamp

from salova.cli_options import DeprecatedOption

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

    serve = commands.add_parser(
        "serve", help="an OpenAI-compatible HTTP API (needs the `serve` extra: pip install 'salova[serve]')"
    )
    _add_model_arguments(serve, reindex=False)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", help="the model id clients send (default: the checkpoint folder's name)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("SALOVA_API_KEY"),
        help="Bearer key every route but /health needs (default: $SALOVA_API_KEY)",
    )
    serve.add_argument(
        "--allowed-media-path",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="folders whose videos clients may name by path or file:// URL (default: none; uploads and data URLs only)",
    )
    serve.add_argument("--allow-remote-media", action="store_true", help="let clients name http(s):// videos")
    serve.add_argument("--max-video-seconds", type=float, help="longest video accepted (0: no limit)")
    serve.add_argument("--max-upload-mb", type=float, help="largest file accepted by POST /v1/files")
    serve.add_argument("--max-data-url-mb", type=float, help="largest video accepted as a data: URL")
    serve.add_argument("--max-remote-mb", type=float, help="largest http(s) video downloaded")
    serve.add_argument("--remote-timeout", type=float, help="seconds an http(s) video may take to download")
    serve.add_argument("--workers", type=int, help="threads running model jobs (each holds at most one video)")
    serve.add_argument("--max-queue", type=int, help="requests that may wait for a worker before 503")
    serve.add_argument("--indexes-in-memory", type=int, help="indexes kept open for later questions")
    serve.add_argument("--default-max-tokens", type=int, help="answer length when a request sets none")
    serve.set_defaults(run=run_serve)


def _add_model_arguments(parser: argparse.ArgumentParser, reindex: bool = True) -> None:
    parser.add_argument("--model", required=True, help="SALOVA checkpoint folder")
    parser.add_argument(
        "--index-dir", help="index cache folder (default: $SALOVA_INDEX_DIR or ~/.cache/salova/indexes)"
    )
    if reindex:
        parser.add_argument("--index", dest="index_file", help="use this index file instead of the cache's")
        parser.add_argument("--reindex", action="store_true", help="rebuild the index even when one is stored")


def _add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-focus-segments", type=int, help="K: focus scenes fed to the LLM (default: the model config's)"
    )
    parser.add_argument("--top-k", dest="num_focus_segments", type=int, action=DeprecatedOption)
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
    answer = assistant.ask(index, messages, args.num_focus_segments, args.max_new_tokens, stream, status, seconds)
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
        answer = assistant.ask(
            index, messages, args.num_focus_segments, args.max_new_tokens, _print_piece, status, seconds
        )
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


def run_serve(args) -> None:
    try:
        from salova.assistant.serve import ServeSettings, serve
        from salova.assistant.serve_media import MEBIBYTE, MediaPolicy
    except ImportError as error:
        raise SystemExit(f"salova serve needs fastapi and uvicorn: pip install 'salova[serve]' ({error}).") from error
    limits = {
        "max_video_seconds": args.max_video_seconds,
        "max_upload_bytes": args.max_upload_mb and int(args.max_upload_mb * MEBIBYTE),
        "max_data_url_bytes": args.max_data_url_mb and int(args.max_data_url_mb * MEBIBYTE),
        "max_remote_bytes": args.max_remote_mb and int(args.max_remote_mb * MEBIBYTE),
        "remote_timeout": args.remote_timeout,
    }
    media = MediaPolicy(
        allowed_folders=tuple(args.allowed_media_path),
        allow_remote=args.allow_remote_media,
        **{name: value for name, value in limits.items() if value is not None},
    )
    scheduling = {
        "workers": args.workers,
        "max_queue": args.max_queue,
        "indexes_in_memory": args.indexes_in_memory,
        "default_max_tokens": args.default_max_tokens,
    }
    settings = ServeSettings(
        model_name=args.served_model_name or Path(args.model).resolve().name,
        api_key=args.api_key or None,
        media=media,
        **{name: value for name, value in scheduling.items() if value is not None},
    )
    serve(_assistant(args), settings, args.host, args.port)


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

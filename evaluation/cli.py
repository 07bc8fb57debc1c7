"""`salova eval ...`: benchmark runners, V-NIAH and the router's retrieval metric, from a checkpoint folder."""

import argparse
import json
from pathlib import Path

from salova.evaluation.benchmarks import BENCHMARKS

SYNTHETIC_NEEDLE_COLOURS = ("red", "blue", "yellow", "cyan")


def add_eval_parser(commands) -> None:
    """Adds `eval` and its subcommands to the `salova` command's subparsers."""
    evaluation = commands.add_parser("eval", help="benchmarks, V-NIAH and retrieval metrics of a checkpoint")
    evaluation.set_defaults(run=run_eval)
    tasks = evaluation.add_subparsers(dest="eval_task", required=True)
    for benchmark in BENCHMARKS:
        runner = tasks.add_parser(benchmark, help=f"{benchmark} multiple-choice accuracy (resumable)")
        runner.add_argument("--annotations", required=True, help="the benchmark's annotation file (or MLVU folder)")
        runner.add_argument("--videos", required=True, help="folder of the benchmark's videos")
        _common(runner)
        runner.add_argument("--limit", type=int, help="answer only the first N questions")

    niah = tasks.add_parser("niah", help="needle-in-a-haystack over a depth x length grid")
    niah.add_argument("--haystack", required=True, help="haystack video (loops when shorter than a length)")
    niah.add_argument("--needle", required=True, help="needle image or video (held or looped to at least 3 s)")
    niah.add_argument("--question", required=True, help="question only the needle answers")
    niah.add_argument("--answer", required=True, help="reference answer (exact match after normalisation)")
    _grid(niah, "60,300,900,1800,3600")
    _common(niah)

    synthetic = tasks.add_parser(
        "niah-synthetic", help="V-NIAH on synthetic-corpus haystacks with a needle colour they lack (tiny model)"
    )
    synthetic.add_argument(
        "--colours", default=",".join(SYNTHETIC_NEEDLE_COLOURS), help="needle colours, one case each"
    )
    synthetic.add_argument("--haystack-scenes", type=int, default=40, help="scenes of each haystack video")
    _grid(synthetic, "30,60,120,300,600")
    _common(synthetic)

    retrieval = tasks.add_parser("retrieval", help="router recall@K and exact match on stage-2-format records")
    retrieval.add_argument("--records", required=True, help="stage-2 JSONL (e.g. the synthetic corpus's eval.jsonl)")
    _common(retrieval)


def run_eval(args: argparse.Namespace) -> dict:
    import torch
    from salova.assistant import VideoAssistant

    assistant = VideoAssistant.from_pretrained(args.model, dtype=torch.float32)
    output = Path(args.output)
    if args.eval_task in BENCHMARKS:
        from salova.evaluation.benchmarks import markdown_table, run_benchmark

        summary = run_benchmark(
            args.eval_task, args.annotations, args.videos, assistant, output, args.limit, args.max_new_tokens
        )
        print(markdown_table(summary, args.eval_task))
        return summary
    if args.eval_task == "retrieval":
        return _retrieval(assistant, args.records, output, args.max_new_tokens)

    from salova.evaluation.niah import NiahCase, load_footage, needle_footage, run_niah

    if args.eval_task == "niah":
        sources = [(args.haystack, args.needle, args.question, args.answer)]
    else:
        from salova.training.synthetic_corpus import write_niah_case

        sources = []
        for colour in args.colours.split(","):
            case = write_niah_case(output / "videos" / colour, colour.strip(), args.haystack_scenes)
            sources.append((case["haystack"], case["needle"], case["question"], case["answer"]))
    processor = assistant.processor
    cases = [
        NiahCase(load_footage(processor, haystack), needle_footage(processor, needle), question, answer)
        for haystack, needle, question, answer in sources
    ]
    lengths, depths = _numbers(args.lengths, int), _numbers(args.depths, float)
    report = run_niah(assistant, cases, lengths, depths, output, max_new_tokens=args.max_new_tokens)
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {output / 'niah.json'} and {output / 'niah.png'}")
    return report


def _retrieval(assistant, records: str, output: Path, max_new_tokens: int) -> dict:
    from salova.evaluation.retrieval import evaluate, random_router, summarise

    learned = evaluate(assistant, records, max_new_tokens, progress=True)
    with random_router(assistant.model):
        ablation = evaluate(assistant, records, max_new_tokens, progress=True)
    report = {"learned": summarise(learned), "random_router": summarise(ablation)}
    output.mkdir(parents=True, exist_ok=True)
    (output / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return report


def _common(parser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (model and processor)")
    parser.add_argument("--output", required=True, help="folder for the results")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per answer")


def _grid(parser, lengths: str) -> None:
    parser.add_argument("--lengths", default=lengths, help="haystack lengths in seconds, comma-separated")
    parser.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="needle depths in [0, 1], comma-separated")


def _numbers(text: str, kind) -> list:
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise SystemExit(f"Expected comma-separated numbers, got {text!r} ({error}).") from error
    if not values:
        raise SystemExit(f"Expected at least one number, got {text!r}.")
    return values

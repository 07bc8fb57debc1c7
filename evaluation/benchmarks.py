"""Multiple-choice long-video benchmarks in their published layouts, prompted and scored as lmms-eval 0.7 does.

- Video-MME: a parquet file, one row per question (`videoID`, `duration` short/medium/long, `task_type`,
  `question`, `options` ["A. ...", ...], `answer` letter, ...); videos `<videoID>.mp4`. Prompt of lmms-eval's
  `videomme` task (default kwargs).
- LongVideoBench: `lvb_val.json`, a list of items (`id`, `video_path`, `question`, `candidates`, `correct_choice`
  index, `duration_group`, `question_category`, ...); videos at `video_path` under the videos folder. Prompt of
  lmms-eval's `longvideobench_val_v`.
- MLVU: one JSON per task (a file or a folder of them), items with `video`, `duration`, `question`, `candidates`,
  `answer` (the right candidate's text), `question_type`; videos `<video>` under the videos folder or its
  `<task file stem>/` subfolder. The question is laid out as MLVU's own evaluation does ("Question: ...",
  "Options:", "(A) ...") followed by lmms-eval's `mlvu_dev` post-prompt. Items without candidates (the open-ended
  tasks, which need an LLM judge) are skipped and counted.

`run_benchmark` answers the questions through the answering core (`salova.assistant.VideoAssistant`), grouped by
video (each decoded and encoded once), the bare question as the router's query; it appends one JSON line per
question to `answers.jsonl`, skipping questions a previous run already answered, and writes `summary.json` and
`summary.md`: accuracy by duration bucket, by task type and overall. A missing video or a malformed row is counted
and listed in the summary, never fatal.
"""

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

BENCHMARKS = ("videomme", "longvideobench", "mlvu")
LETTERS = "ABCDEFGH"

VIDEOMME_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
VIDEOMME_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
MLVU_POST_PROMPT = "\nOnly give the best option.\nBest option: ("
# Answer phrases lmms-eval's LongVideoBench parser removes before looking for the letter.
ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
# MLVU durations are seconds; Video-MME and LongVideoBench ship their own buckets.
MLVU_DURATION_BUCKETS = ((180, "<3 min"), (600, "3-10 min"), (1800, "10-30 min"), (float("inf"), ">30 min"))


@dataclass(frozen=True)
class BenchmarkQuestion:
    question_id: str
    video: str  # path of the video file
    question: str  # the bare question (the router's query)
    prompt: str  # the full multiple-choice prompt
    choices: str  # the option letters, e.g. "ABCD"
    answer: str  # the right letter
    duration: str  # duration bucket
    task_type: str


@dataclass
class Annotations:
    questions: list[BenchmarkQuestion]
    malformed: list[str]  # "<where>: <what is wrong>"
    skipped: list[str]  # rows out of scope (open-ended)


def extract_choice(response: str, choices: str) -> str:
    """The option letter a response gives: the first of `choices` standing alone (not inside a word) after the
    answer phrases are removed, or "" when there is none. Returns the letter upper-case."""
    text = response
    for prefix in ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search(rf"(?<![A-Za-z])([{choices}])(?![A-Za-z])", text)
    return match.group(1) if match else ""


def read_videomme(annotations: Path, videos: Path) -> Annotations:
    import pyarrow.parquet

    rows = pyarrow.parquet.read_table(annotations).to_pylist()
    questions, malformed = [], []
    for index, row in enumerate(rows):
        where = f"{annotations.name} row {index}"
        try:
            options = list(row["options"])
            choices = LETTERS[: len(options)]
            answer = str(row["answer"]).strip().upper()
            _check_answer(answer, choices)
            prompt = "\n".join([VIDEOMME_INSTRUCTION, row["question"], *options, VIDEOMME_POST_PROMPT])
            questions.append(
                BenchmarkQuestion(
                    question_id=str(row["question_id"]),
                    video=str(videos / f"{row['videoID']}.mp4"),
                    question=row["question"],
                    prompt=prompt,
                    choices=choices,
                    answer=answer,
                    duration=str(row["duration"]),
                    task_type=str(row["task_type"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            malformed.append(f"{where}: {_describe(error)}")
    return Annotations(questions, malformed, [])


def read_longvideobench(annotations: Path, videos: Path) -> Annotations:
    items = _json_list(annotations)
    questions, malformed = [], []
    for index, item in enumerate(items):
        where = f"{annotations.name} item {index}"
        try:
            candidates = list(item["candidates"])
            choices = LETTERS[: len(candidates)]
            correct = int(item["correct_choice"])
            if not 0 <= correct < len(candidates):
                raise ValueError(f"correct_choice {correct} is not an index of the {len(candidates)} candidates")
            options = [f"{letter}. {candidate}" for letter, candidate in zip(choices, candidates, strict=True)]
            questions.append(
                BenchmarkQuestion(
                    question_id=str(item.get("id", index)),
                    video=str(videos / item["video_path"]),
                    question=item["question"],
                    prompt="\n".join([item["question"], *options, LONGVIDEOBENCH_POST_PROMPT]),
                    choices=choices,
                    answer=choices[correct],
                    duration=str(item["duration_group"]),
                    task_type=str(item["question_category"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            malformed.append(f"{where}: {_describe(error)}")
    return Annotations(questions, malformed, [])


def read_mlvu(annotations: Path, videos: Path) -> Annotations:
    files = sorted(annotations.glob("*.json")) if annotations.is_dir() else [annotations]
    if not files:
        raise FileNotFoundError(f"--annotations {annotations}: no MLVU task JSON (*.json) in this folder.")
    questions, malformed, skipped = [], [], []
    for path in files:
        for index, item in enumerate(_json_list(path)):
            where = f"{path.name} item {index}"
            if isinstance(item, dict) and "candidates" not in item and "question" in item:
                skipped.append(f"{where}: open-ended (no candidates)")
                continue
            try:
                candidates = [str(candidate) for candidate in item["candidates"]]
                choices = LETTERS[: len(candidates)]
                if item["answer"] not in candidates:
                    raise ValueError(f"answer {item['answer']!r} is not one of the candidates")
                task = str(item.get("question_type") or path.stem)
                options = [f"({letter}) {candidate}" for letter, candidate in zip(choices, candidates, strict=True)]
                prompt = "\n".join([f"Question: {item['question']}", "Options:", *options]) + MLVU_POST_PROMPT
                questions.append(
                    BenchmarkQuestion(
                        question_id=f"{path.stem}-{index}",
                        video=str(_mlvu_video(videos, path.stem, item["video"])),
                        question=item["question"],
                        prompt=prompt,
                        choices=choices,
                        answer=choices[candidates.index(item["answer"])],
                        duration=_mlvu_bucket(float(item["duration"])),
                        task_type=task,
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                malformed.append(f"{where}: {_describe(error)}")
    return Annotations(questions, malformed, skipped)


READERS: dict[str, Callable[[Path, Path], Annotations]] = {
    "videomme": read_videomme,
    "longvideobench": read_longvideobench,
    "mlvu": read_mlvu,
}


def run_benchmark(
    benchmark: str,
    annotations: str | Path,
    videos: str | Path,
    assistant,
    output: str | Path,
    limit: int | None = None,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> dict:
    """Answers the benchmark's questions (the first `limit`) with `assistant` (a `VideoAssistant`), greedy and at
    most `max_new_tokens` each, and writes `answers.jsonl`, `summary.json` and `summary.md` into `output`. Returns
    the summary."""
    if benchmark not in READERS:
        raise ValueError(f"Unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}.")
    annotations, videos, output = Path(annotations), Path(videos), Path(output)
    if not annotations.exists():
        raise FileNotFoundError(f"--annotations {annotations} does not exist.")
    if not videos.is_dir():
        raise FileNotFoundError(f"--videos {videos} is not a folder.")
    read = READERS[benchmark](annotations, videos)
    questions = read.questions[:limit] if limit is not None else read.questions
    output.mkdir(parents=True, exist_ok=True)
    answers_path = output / "answers.jsonl"
    records = _read_answers(answers_path)
    todo = [question for question in questions if question.question_id not in records]
    by_video = defaultdict(list)
    for question in todo:
        by_video[question.video].append(question)

    with (
        answers_path.open("a", encoding="utf-8") as answers,
        tqdm(total=len(todo), desc=benchmark, unit="question", disable=not progress) as bar,
    ):
        for video, video_questions in by_video.items():
            for record in _answer_video(assistant, video, video_questions, max_new_tokens):
                answers.write(json.dumps(record) + "\n")
                answers.flush()
                records[record["question_id"]] = record
                bar.update()

    wanted = {question.question_id for question in questions}
    summary = summarise_answers([records[key] for key in records if key in wanted], read)
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (output / "summary.md").write_text(markdown_table(summary, benchmark), encoding="utf-8")
    return summary


def _answer_video(assistant, video: str, questions: list[BenchmarkQuestion], max_new_tokens: int) -> Iterable[dict]:
    base = [{**asdict(question), "response": "", "prediction": "", "correct": False} for question in questions]
    if not Path(video).is_file():
        for record in base:
            yield {**record, "status": "missing_video"}
        return
    start = time.perf_counter()
    try:
        encoded = assistant.encode(video)
    except (ValueError, OSError) as error:
        for record in base:
            yield {**record, "status": "unreadable_video", "error": _describe(error)}
        return
    decode_seconds = time.perf_counter() - start
    for question, record in zip(questions, base, strict=True):
        try:
            messages = assistant.conversation(None, [question.prompt], [])
            response = assistant.ask(encoded, messages, max_new_tokens=max_new_tokens, query=question.question).text
        except ValueError as error:  # e.g. a prompt longer than the LLM's positions: this question only
            yield {**record, "status": "unanswerable", "error": _describe(error)}
            continue
        prediction = extract_choice(response, question.choices)
        yield {
            **record,
            "response": response,
            "prediction": prediction,
            "correct": prediction == question.answer,
            "status": "answered",
            "decode_seconds": round(decode_seconds, 3),
        }


def summarise_answers(records: list[dict], annotations: Annotations) -> dict:
    """Accuracy over answered questions, overall, by duration bucket and by task type; missing or unreadable
    videos, malformed and skipped rows counted (missing videos are excluded from the accuracies)."""
    answered = [record for record in records if record["status"] == "answered"]

    def accuracy(group: list[dict]) -> dict:
        return {"questions": len(group), "accuracy": sum(r["correct"] for r in group) / len(group) if group else None}

    by = {"duration": defaultdict(list), "task_type": defaultdict(list)}
    for record in answered:
        for key, groups in by.items():
            groups[record[key]].append(record)
    unanswered = defaultdict(list)
    for record in records:
        if record["status"] != "answered":
            unanswered[record["status"]].append(record["question_id"])
    return {
        "overall": accuracy(answered),
        "by_duration": {name: accuracy(group) for name, group in sorted(by["duration"].items())},
        "by_task_type": {name: accuracy(group) for name, group in sorted(by["task_type"].items())},
        "unparsed_answers": sum(not record["prediction"] for record in answered),
        "missing_video": len(unanswered["missing_video"]),
        "unreadable_video": len(unanswered["unreadable_video"]),
        "unanswerable": len(unanswered["unanswerable"]),
        "malformed_rows": len(annotations.malformed),
        "skipped_rows": len(annotations.skipped),
        "problems": {
            "missing_video": unanswered["missing_video"][:20],
            "unreadable_video": unanswered["unreadable_video"][:20],
            "unanswerable": unanswered["unanswerable"][:20],
            "malformed_rows": annotations.malformed[:20],
            "skipped_rows": annotations.skipped[:20],
        },
    }


def markdown_table(summary: dict, benchmark: str) -> str:
    lines = [f"# {benchmark}", "", "| group | questions | accuracy |", "|---|---:|---:|"]

    def row(name: str, result: dict) -> str:
        value = "–" if result["accuracy"] is None else f"{100 * result['accuracy']:.1f}"
        return f"| {name} | {result['questions']} | {value} |"

    for name, result in summary["by_duration"].items():
        lines.append(row(f"duration: {name}", result))
    for name, result in summary["by_task_type"].items():
        lines.append(row(f"task: {name}", result))
    lines.append(row("**overall**", summary["overall"]))
    counts = ("unparsed_answers", "missing_video", "unreadable_video", "unanswerable", "malformed_rows", "skipped_rows")
    lines += ["", ", ".join(f"{name.replace('_', ' ')}: {summary[name]}" for name in counts), ""]
    return "\n".join(lines)


def _read_answers(path: Path) -> dict[str, dict]:
    """Answered questions of a previous run by id. The file is rewritten with those only: a last line cut off
    by an interrupted run goes, and questions whose video was missing or unreadable are tried again."""
    records = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("status") == "answered":
                records[record["question_id"]] = record
        path.write_text("".join(json.dumps(record) + "\n" for record in records.values()), encoding="utf-8")
    return records


def _json_list(path: Path) -> list:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of question items, got {type(items).__name__}.")
    return items


def _check_answer(answer: str, choices: str) -> None:
    if len(answer) != 1 or answer not in choices:
        raise ValueError(f"answer {answer!r} is not one of the option letters {choices}")


def _mlvu_video(videos: Path, task: str, name: str) -> Path:
    direct = videos / name
    return direct if direct.is_file() or not (videos / task).is_dir() else videos / task / name


def _mlvu_bucket(seconds: float) -> str:
    return next(name for limit, name in MLVU_DURATION_BUCKETS if seconds < limit)


def _describe(error: Exception) -> str:
    return f"missing field {error}" if isinstance(error, KeyError) else str(error)

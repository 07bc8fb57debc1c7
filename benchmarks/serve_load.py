"""`salova serve` under load: concurrent clients against the same questions asked one after another in one process.

Each of `--clients` clients (threads, each with the official `openai` client) asks `--questions` questions in turn;
client c's question j is about video (c + j) mod 3, so the clients' first questions about every video arrive
together while its index does not exist yet. The same questions are first asked one after another through
`VideoAssistant` in this process (its own fresh index folder), which also gives the answers every server answer
must equal (greedy); they run on one worker thread, as a server's worker runs them. Then, for each server
setting, a fresh `salova serve` process (fresh index folder, on 127.0.0.1) takes the concurrent load; a client
refused with 503 waits the `Retry-After` seconds and asks again.

Checked per run: every request answered (refusals retried, nothing lost), every answer equal to the sequential
one, each video's index built once. Reported: requests/s over the run, p50/p95 latency of the clients' first
questions and of their later ones (a request's latency includes its waits for a 503 retry), 503 refusals, indexes
built. Latencies exclude the server's start.

    python benchmarks/serve_load.py [--model CKPT] [--clients 8] [--questions 5] [--max-tokens 16]
        [--settings one-worker two-workers short-queue] [--json out.json]

Without `--model` it builds the tiny random model (seed 0) into a temporary checkpoint, as the tests do.

OpenMP's workers wait passively here (`OMP_WAIT_POLICY=PASSIVE`, set before torch loads, inherited by the servers)
unless the environment says otherwise: on a machine whose cores other work also wants, spinning workers make every
small parallel step of a tiny model's generation wait for a time slice, which then dominates whatever is measured.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see the docstring

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
from salova.assistant import VideoAssistant

REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-videos"
VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
QUESTIONS = (
    "What happens in this video?",
    "Who or what moves the most?",
    "Where does the scene take place?",
    "What changes at the first cut?",
    "How does the video end?",
)
# name: (label, serve flags): one worker with room for every client, two workers, and a queue too short for the load.
SERVER_SETTINGS = {
    "one-worker": ("1 worker, --max-queue 16", ["--workers", "1", "--max-queue", "16"]),
    "two-workers": ("2 workers, --max-queue 16", ["--workers", "2", "--max-queue", "16"]),
    "short-queue": ("1 worker, --max-queue 2", ["--workers", "1", "--max-queue", "2"]),
}
MODEL_NAME = "salova-bench"


def schedule(clients: int, questions: int) -> list[list[tuple[str, str]]]:
    """Each client's `(video, question)` list."""
    return [
        [(VIDEOS[(client + number) % len(VIDEOS)], QUESTIONS[number % len(QUESTIONS)]) for number in range(questions)]
        for client in range(clients)
    ]


def sequential(model_dir: Path, videos: Path, plan, max_tokens: int, index_dir: Path) -> tuple[dict, dict]:
    """The plan asked one question at a time through `VideoAssistant` in this process: `(result, answers)`."""
    assistant = VideoAssistant.from_pretrained(model_dir, index_dir)
    answers, latencies, built = {}, {"first": [], "later": []}, 0
    started = time.perf_counter()
    for questions in plan:
        for number, (video, question) in enumerate(questions):
            asked = time.perf_counter()
            index, status, seconds = assistant.open(videos / video, progress=False)
            messages = assistant.conversation(videos / video, [question], [])
            answer = assistant.ask(
                index, messages, max_new_tokens=max_tokens, index_status=status, index_seconds=seconds
            )
            latencies["first" if number == 0 else "later"].append(time.perf_counter() - asked)
            built += status == "built"
            answers[(video, question)] = answer.text
    wall = time.perf_counter() - started
    return _result("sequential, one process (VideoAssistant)", plan, wall, latencies, built, refusals=0), answers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def concurrent(
    model_dir: Path, videos: Path, plan, max_tokens: int, label: str, flags: list[str], answers: dict, folder: Path
) -> dict:
    """The plan's clients all at once against a fresh `salova serve` process."""
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "salova"),
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--index-dir",
        str(folder / "indexes"),
        "--allowed-media-path",
        str(videos),
        "--served-model-name",
        MODEL_NAME,
        *flags,
    ]
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SALOVA_API_KEY": ""})
    try:
        _wait_until_healthy(server, port, folder / "server.log")
        base_url = f"http://127.0.0.1:{port}/v1"

        def run_client(questions):
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
            rows = []
            for number, (video, question) in enumerate(questions):
                asked, refusals = time.perf_counter(), 0
                while True:
                    try:
                        response = client.chat.completions.create(
                            model=MODEL_NAME,
                            messages=[
                                {
                                    "role": "user",
                                    "content": [
                                        {"type": "video_url", "video_url": {"url": str(videos / video)}},
                                        {"type": "text", "text": question},
                                    ],
                                }
                            ],
                            max_tokens=max_tokens,
                        )
                        break
                    except openai.APIStatusError as error:
                        if error.status_code != 503:
                            raise
                        refusals += 1
                        time.sleep(int(error.response.headers["Retry-After"]))
                rows.append(
                    {
                        "first": number == 0,
                        "seconds": time.perf_counter() - asked,
                        "refusals": refusals,
                        "index": response.model_extra["salova"]["index"],
                        "video": video,
                        "equal": response.choices[0].message.content == answers[(video, question)],
                    }
                )
            return rows

        started = time.perf_counter()
        with ThreadPoolExecutor(len(plan)) as pool:
            rows = [row for client_rows in pool.map(run_client, plan) for row in client_rows]
        wall = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        log.close()
    asked = sum(len(questions) for questions in plan)
    built = {video: sum(row["index"] == "built" and row["video"] == video for row in rows) for video in VIDEOS}
    if len(rows) != asked or not all(row["equal"] for row in rows) or set(built.values()) != {1}:
        raise SystemExit(
            f"{label}: {len(rows)} of {asked} answered, {sum(r['equal'] for r in rows)} equal to the "
            f"sequential answers, indexes built per video {built}: the load run lost or changed work."
        )
    latencies = {
        "first": [r["seconds"] for r in rows if r["first"]],
        "later": [r["seconds"] for r in rows if not r["first"]],
    }
    return _result(
        f"`salova serve`, {label}", plan, wall, latencies, sum(built.values()), sum(row["refusals"] for row in rows)
    )


def _wait_until_healthy(server: subprocess.Popen, port: int, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"salova serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"salova serve did not answer /health within {seconds:.0f} s")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _result(label: str, plan, wall: float, latencies: dict, built: int, refusals: int) -> dict:
    requests = sum(len(questions) for questions in plan)
    return {
        "run": label,
        "requests": requests,
        "seconds": round(wall, 3),
        "requests_per_second": round(requests / wall, 2),
        **{
            f"{kind}_p{int(fraction * 100)}": round(_percentile(values, fraction), 3)
            for kind, values in latencies.items()
            for fraction in (0.5, 0.95)
        },
        "later_mean": round(statistics.fmean(latencies["later"]), 3),
        "refusals_503": refusals,
        "indexes_built": built,
    }


def _tiny_checkpoint(folder: Path) -> Path:
    from salova.hub_configs import build_salova

    model, processor = build_salova("tiny", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: the tiny random model)")
    parser.add_argument("--videos", type=Path, default=REAL_VIDEOS, help=f"folder holding {', '.join(VIDEOS)}")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--questions", type=int, default=5, help="questions per client")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--settings", nargs="+", choices=list(SERVER_SETTINGS), default=list(SERVER_SETTINGS), help="server runs"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    missing = [name for name in VIDEOS if not (args.videos / name).is_file()]
    if missing:
        raise SystemExit(f"--videos {args.videos}: missing {', '.join(missing)}")
    work = Path(tempfile.mkdtemp(prefix="salova-serve-load-"))
    try:
        model_dir = args.model or _tiny_checkpoint(work / "checkpoint")
        plan = schedule(args.clients, args.questions)
        with ThreadPoolExecutor(1) as worker:
            baseline, answers = worker.submit(
                sequential, model_dir, args.videos, plan, args.max_tokens, work / "sequential"
            ).result()
        results = [baseline]
        for name in args.settings:
            label, flags = SERVER_SETTINGS[name]
            folder = work / name
            folder.mkdir()
            results.append(concurrent(model_dir, args.videos, plan, args.max_tokens, label, flags, answers, folder))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.clients} clients x {args.questions} questions over {len(VIDEOS)} videos, max_tokens "
        f"{args.max_tokens}, {os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; every answer "
        "equal to the sequential one, each index built once"
    )
    print("| run | req/s | first p50 / p95 s | later p50 / p95 s | 503 refusals | indexes built |")
    print("|---|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['run']} | {row['requests_per_second']:.2f} | {row['first_p50']:.2f} / {row['first_p95']:.2f} | "
            f"{row['later_p50']:.2f} / {row['later_p95']:.2f} | {row['refusals_503']} | {row['indexes_built']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

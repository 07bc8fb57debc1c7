"""SceneWalk at its real size: `salova convert --from scenewalk` and `salova data check` on a synthetic parquet in
the public Hub schema, 1,287,221 clip rows over 87,867 videos, at fractions of its rows.

The parquet has SceneWalk's columns (`id`, `url`, `time_stamp`, `v2t_score`, `t2t_score`, `conversations`; one row
per clip, a video's clips consecutive, row `i`'s scores row `i` of its video's `[captions x scenes]` matrices) with
values drawn from a seed. Every video is a path `<video id>.mp4` in one folder, a symbolic link to one of three
two-minute videos made of the real test clips, so 87,867 paths reach three files. Planted faults, each on its own
videos, with known counts: videos whose file is missing, videos with two clips swapped (unsorted clips), videos with
one clip row repeated (duplicate clip id). A fraction keeps the first videos of the full plan, so its counts are
the full plan's prefix.

Each step runs in a fresh process; reported per step: rows (or records) per second, wall time, and peak memory,
polled from /proc: the largest process's peak resident memory (`VmHWM`; the check's worker processes included),
and the whole process tree's proportional resident memory (`Pss`, so that pages forked workers share count once),
all of it and its anonymous part. Memory-mapped Arrow pages count in resident memory but not in anonymous memory,
which is what a machine cannot page out. The script exits non-zero unless convert's
dropped rows and the check's skipped and repaired counts equal the planted faults. Results go to
`benchmarks/results/scenewalk_scale.json`.

    python benchmarks/scenewalk_scale.py [--fractions 0.1 1.0] [--rows 1287221 --videos 87867] [--num-proc 2]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).parent / "results"
REAL_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-videos"
SCENEWALK_ROWS, SCENEWALK_VIDEOS = 1_287_221, 87_867
CLIPS_PER_VIDEO = (2, 28)
FAULT_SHARES = {"missing video": 0.04, "unsorted clips": 0.03, "duplicate clip id": 0.02}
SOURCE_SECONDS = 120.0
WORDS = "a the person dog car street kitchen walks runs opens sits table door window red blue small large".split()


@dataclass
class ScenewalkPlan:
    """Per video (in row order): its clip count, the real file it links to, and its fault (0: none, else the
    1-based position in `FAULT_SHARES`)."""

    clips: np.ndarray
    sources: np.ndarray
    faults: np.ndarray
    seed: int

    @classmethod
    def draw(cls, rows: int, videos: int, seed: int = 0, num_sources: int = 3) -> "ScenewalkPlan":
        """A plan of exactly `rows` clip rows (repeated rows included) over `videos` videos."""
        rng = np.random.default_rng(seed)
        shares = list(FAULT_SHARES.values())
        faults = rng.choice(len(shares) + 1, size=videos, p=[1 - sum(shares), *shares])
        unique_rows = rows - int((faults == _fault("duplicate clip id")).sum())
        low, high = CLIPS_PER_VIDEO
        if not low * videos <= unique_rows <= high * videos:
            raise ValueError(f"{rows} rows over {videos} videos needs {low}-{high} clips a video on average.")
        clips = rng.integers(low, high + 1, size=videos)
        while (difference := unique_rows - int(clips.sum())) != 0:
            step = np.sign(difference)
            movable = np.flatnonzero((clips + step >= low) & (clips + step <= high))
            clips[rng.choice(movable, size=min(abs(difference), len(movable)), replace=False)] += step
        return cls(clips, rng.integers(num_sources, size=videos), faults, seed)

    def prefix(self, fraction: float) -> "ScenewalkPlan":
        count = max(1, round(fraction * len(self.clips)))
        return ScenewalkPlan(self.clips[:count], self.sources[:count], self.faults[:count], self.seed)

    @property
    def num_rows(self) -> int:
        return int(self.clips.sum() + self.planted()["duplicate clip id"])

    def planted(self) -> dict:
        return {name: int((self.faults == _fault(name)).sum()) for name in FAULT_SHARES}


def _fault(name: str) -> int:
    return list(FAULT_SHARES).index(name) + 1


def source_videos(folder: Path) -> list[tuple[Path, float]]:
    """Three videos of about `SOURCE_SECONDS` each, every real test clip played over and over at 320x180 (written
    once), with their durations as the data check probes them."""
    import av
    from salova.processing.frame_sampling import SAMPLING_FPS
    from salova.training.data_check import probe_video

    from salova.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for clip in sorted(REAL_CLIPS.glob("*.mp4")):
        path = folder / f"{clip.stem}_{SOURCE_SECONDS:g}s.mp4"
        if not path.is_file():
            with av.open(str(clip)) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate)
                frames = [f.reformat(320, 180, format="rgb24").to_ndarray() for f in container.decode(stream)]
            repeats = int(np.ceil(SOURCE_SECONDS * fps / len(frames)))
            partial = path.with_suffix(".partial.mp4")
            write_video(partial, (frame for _ in range(repeats) for frame in frames), fps=fps)
            partial.rename(path)
        sources.append((path, probe_video(str(path), SAMPLING_FPS)["duration"]))
    if not sources:
        raise FileNotFoundError(f"No real test clip (*.mp4) in {REAL_CLIPS}.")
    return sources


def write_scenewalk(plan: ScenewalkPlan, parquet: Path, video_dir: Path, sources: list, batch_videos: int = 4096):
    """Writes `plan` as SceneWalk rows to `parquet` and its videos' links into `video_dir` (none for a missing
    video), a batch of videos at a time."""
    rng = np.random.default_rng([plan.seed, 1])
    video_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    for first in range(0, len(plan.clips), batch_videos):
        columns = {name: [] for name in ("id", "url", "start", "end", "caption")}
        v2t, t2t, lengths = [], [], []
        for index in range(first, min(first + batch_videos, len(plan.clips))):
            video_id, fault = f"sw{index:07d}", plan.faults[index]
            source, duration = sources[plan.sources[index]]
            if fault != _fault("missing video"):
                link = video_dir / f"{video_id}.mp4"
                link.unlink(missing_ok=True)
                link.symlink_to(source)
            count = int(plan.clips[index])
            longest = max(2, int(np.floor(duration)) // count)
            ends = np.cumsum(rng.integers(2, longest + 1, size=count))
            starts = np.r_[0, ends[:-1]]
            order = np.arange(count)
            if fault == _fault("unsorted clips"):
                swap = rng.integers(count - 1)
                order[[swap, swap + 1]] = order[[swap + 1, swap]]
            elif fault == _fault("duplicate clip id"):
                order = np.insert(order, (repeat := rng.integers(count)) + 1, repeat)
            # Scores follow the rows' order: column j is the scene of the video's j-th distinct row.
            columns_order = order[np.sort(np.unique(order, return_index=True)[1])]
            v2t_matrix = rng.uniform(0.0, 0.15, size=(count, count)) + np.eye(count) * 0.2
            t2t_matrix = rng.uniform(0.0, 0.6, size=(count, count)) + np.eye(count) * 0.4
            for clip in order:
                columns["id"].append(f"{video_id}_{clip:03d}")
                columns["start"].append(float(starts[clip]))
                columns["end"].append(float(ends[clip]))
                columns["caption"].append(" ".join(rng.choice(WORDS, size=12)))
                v2t.append(v2t_matrix[clip, columns_order])
                t2t.append(t2t_matrix[clip, columns_order])
            columns["url"] += [f"https://www.youtube.com/watch?v={video_id}"] * len(order)
            lengths += [count] * len(order)
        table = _scenewalk_table(columns, v2t, t2t, lengths)
        writer = writer or pq.ParquetWriter(str(parquet), table.schema)
        writer.write_table(table)
    writer.close()


def _scenewalk_table(columns: dict, v2t: list, t2t: list, lengths: list) -> pa.Table:
    rows = len(columns["id"])
    starts, ends = np.array(columns["start"]), np.array(columns["end"])
    offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
    pairs = pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32))
    turns = pa.StructArray.from_arrays(
        [
            pa.array(["human", "gpt"] * rows),
            pa.array([value for caption in columns["caption"] for value in ("<video>\nDescribe the clip.", caption)]),
        ],
        names=["from", "value"],
    )
    fps = np.full(rows, 30.0)
    return pa.table(
        {
            "id": columns["id"],
            "url": columns["url"],
            "time_stamp": pa.StructArray.from_arrays(
                [
                    pa.array([_clock(seconds) for seconds in starts]),
                    pa.array([_clock(seconds) for seconds in ends]),
                    pa.array((starts * 30).astype(np.int64)),
                    pa.array((ends * 30).astype(np.int64)),
                    pa.array(fps),
                    pa.array(fps),
                    pa.array(ends - starts),
                ],
                names=["start_time", "end_time", "start_frame", "end_frame", "start_fps", "end_fps", "duration"],
            ),
            "v2t_score": pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(v2t))),
            "t2t_score": pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(t2t))),
            "conversations": pa.ListArray.from_arrays(pairs, turns),
        }
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}"


def run_step(command: list[str], log: Path, env: dict) -> dict:
    """Runs `command` in a fresh process; its wall time and the peaks of its process tree's memory, polled from
    /proc every 0.1 s (see the module docstring)."""
    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    peaks = dict.fromkeys(("largest_process_mib", "tree_pss_mib", "tree_anon_pss_mib"), 0.0)
    while process.poll() is None:
        for key, value in (_tree_memory(process.pid) or {}).items():
            peaks[key] = max(peaks[key], value)
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; its output: {log}\n{log.read_text()[-3000:]}")
    return {"wall_s": round(wall, 3), **{f"peak_{key}": round(value, 1) for key, value in peaks.items()}}


def _tree_memory(pid: int) -> dict | None:
    """MiB of `pid` and its descendants: the largest one's peak resident memory (`VmHWM`), and the proportional
    resident memory (`Pss`: a page shared by n processes counts 1/n) of them all, all pages and anonymous ones.

    None where a process started or ended while the tree was read: a page shared across a fork would count whole in
    the parent read before it and again in the child read after it."""
    memory = {"largest_process_mib": 0.0, "tree_pss_mib": 0.0, "tree_anon_pss_mib": 0.0}
    processes = _process_tree(pid)
    for current in processes:
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except OSError:  # the process ended meanwhile
            return None
        fields = dict(re.findall(r"^(VmHWM|Pss|Pss_Anon):\s+(\d+) kB", status + rollup, re.MULTILINE))
        memory["largest_process_mib"] = max(memory["largest_process_mib"], int(fields.get("VmHWM", 0)) / 1024)
        memory["tree_pss_mib"] += int(fields.get("Pss", 0)) / 1024
        memory["tree_anon_pss_mib"] += int(fields.get("Pss_Anon", 0)) / 1024
    return memory if _process_tree(pid) == processes else None


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (those still running)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # the process ended meanwhile
            continue
        tree.append(current)
        pending += [int(child) for child in children]
    return sorted(tree)


def checkpoint_folder(folder: Path) -> Path:
    """The tiny model with the published variants' segment policy (256 segments of up to 2160 frames), so that a
    video's 28 scenes stay 28 segments."""
    from salova.hub_configs import build_salova
    from salova.modeling import SalovaConfig

    if not (folder / "config.json").is_file():
        model, processor = build_salova("tiny", seed=0)
        defaults = SalovaConfig()
        processor.video_processor.router_max_segments = defaults.router_max_segments
        processor.video_processor.max_frames_per_segment = defaults.max_frames_per_segment
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return folder


def compare_with_plan(plan: ScenewalkPlan, convert_output: str, report: dict) -> None:
    """Exits with the difference unless convert's dropped rows (from its printed output) and the check's report
    count exactly the planted faults, every other video kept."""
    dropped = re.search(r"dropped (\d+) rows: duplicate clip id", convert_output)
    found = {
        "missing video": report["reasons"].get("skipped", {}).get("video file missing", {}).get("count", 0),
        "unsorted clips": report["reasons"].get("repaired", {}).get("unsorted scene starts", {}).get("count", 0),
        "duplicate clip id": int(dropped.group(1)) if dropped else 0,
    }
    planted = plan.planted()
    clean = len(plan.clips) - planted["missing video"] - planted["unsorted clips"]
    counts = {"records": report["records"], "kept": report["kept"], "repaired": report["repaired"]}
    expected = {"records": len(plan.clips), "kept": clean, "repaired": planted["unsorted clips"]}
    if found != planted or counts != expected:
        raise SystemExit(f"The reports disagree with the plan: found {found} {counts}, planted {planted} {expected}.")


def measure(plan: ScenewalkPlan, workdir: Path, sources: list, model: Path, num_proc: int) -> dict:
    """Generates `plan`, converts and checks it, and compares the reports with the planted faults."""
    parquet, video_dir, converted = workdir / "scenewalk.parquet", workdir / "videos", workdir / "stage1_5.parquet"
    started = time.perf_counter()
    write_scenewalk(plan, parquet, video_dir, sources)
    generated = time.perf_counter() - started
    # Each step starts with an empty `datasets` cache of its own.
    env = {**os.environ, "HF_DATASETS_CACHE": str(workdir / "hf_cache"), "TOKENIZERS_PARALLELISM": "false"}
    salova = [sys.executable, "-m", "salova.cli"]
    convert = run_step(
        [*salova, "convert", "--from", "scenewalk", "--video-dir", str(video_dir), str(parquet), str(converted)],
        workdir / "convert.log",
        env,
    )
    check = run_step(
        [*salova, "data", "check", "--stage", "1.5", "--model", str(model), "--report-dir", str(workdir / "report")]
        + ["--data-check-num-proc", str(num_proc), str(converted)],
        workdir / "check.log",
        env,
    )
    compare_with_plan(
        plan, (workdir / "convert.log").read_text(), json.loads((workdir / "report" / "data_check.json").read_text())
    )
    rows = plan.num_rows
    convert["rows_per_s"] = round(rows / convert["wall_s"], 1)
    check["records_per_s"] = round(len(plan.clips) / check["wall_s"], 1)
    check["clip_rows_per_s"] = round(rows / check["wall_s"], 1)
    return {
        "rows": rows,
        "videos": len(plan.clips),
        "planted": plan.planted(),
        "generate_s": round(generated, 3),
        "convert": convert,
        "check": check,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 1.0])
    parser.add_argument("--rows", type=int, default=SCENEWALK_ROWS)
    parser.add_argument("--videos", type=int, default=SCENEWALK_VIDEOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-proc", type=int, default=2, help="data check workers")
    parser.add_argument("--workdir", type=Path, help="where the data go (default: a temporary folder)")
    parser.add_argument("--sources", type=Path, default=RESULTS / "scenewalk_sources", help="the linked videos")
    parser.add_argument("--output", type=Path, default=RESULTS / "scenewalk_scale.json")
    args = parser.parse_args()
    plan = ScenewalkPlan.draw(args.rows, args.videos, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    sources = source_videos(args.sources)
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        model = checkpoint_folder(Path(workdir) / "model")
        for fraction in sorted(args.fractions):
            folder = Path(workdir) / f"fraction_{fraction:g}"
            folder.mkdir()
            result = {"fraction": fraction, **measure(plan.prefix(fraction), folder, sources, model, args.num_proc)}
            results.append(result)
            print(json.dumps(result), flush=True)
    first, last = results[0], results[-1]
    growth = {
        "rows": round(last["rows"] / first["rows"], 2),
        **{
            f"{step}_{key}": round(last[step][key] / first[step][key], 2)
            for step in ("convert", "check")
            for key in ("wall_s", "peak_largest_process_mib", "peak_tree_pss_mib", "peak_tree_anon_pss_mib")
        },
    }
    print(f"{'rows':>9} {'step':>8} {'wall':>9} {'rows/s':>9} {'process':>9} {'tree PSS':>9} {'anon PSS':>9}")
    for result in results:
        for step in ("convert", "check"):
            numbers = result[step]
            speed = numbers.get("rows_per_s", numbers.get("clip_rows_per_s"))
            print(
                f"{result['rows']:>9} {step:>8} {numbers['wall_s']:>8.1f}s {speed:>9.0f} "
                f"{numbers['peak_largest_process_mib']:>8.0f}M {numbers['peak_tree_pss_mib']:>8.0f}M "
                f"{numbers['peak_tree_anon_pss_mib']:>8.0f}M"
            )
    print(f"growth from {first['fraction']:g} to {last['fraction']:g} of the rows: {json.dumps(growth)}")
    report = {"settings": {**vars(args), **{key: str(getattr(args, key)) for key in ("workdir", "sources", "output")}}}
    report.update(cpu_count=os.cpu_count(), results=results, growth=growth)
    args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

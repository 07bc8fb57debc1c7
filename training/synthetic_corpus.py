"""A deterministic synthetic corpus for the three training stages and a held-out evaluation split.

Every video is a sequence of scenes. A scene is a flat background colour with one white or black shape crossing
the frame (left, right, up or down) and leaving a fading trail, so a tiny vision tower (56x56 input) can tell scenes
apart by colour, shape and motion, even in the 2-4 frames a scene gives at 1 FPS, and a cut is wherever the
background changes. Its caption reads
"a white circle moves left in the red scene"; captions, questions and answers only use the words the tiny
tokenizer was trained on (colours, shapes, motions and question words).

`generate_corpus` writes H.264 MP4 files under `out_dir/videos/` and one JSONL file per split (paths relative to
`out_dir`, times in seconds, scores rounded to 4 decimals):

- `stage1.jsonl`, alignment: one-scene clips of 2-3 s with their caption
  `{"id", "video", "caption"}`.
- `stage1_5.jsonl`, long-video knowledge injection: videos of 6-10 scenes with one caption per scene
  `{"id", "video", "scenes": [{"start", "end", "caption"}], "v2t", "t2t"}`. `v2t` (video-to-text) and `t2t`
  (text-to-text) are `[captions x scenes]` similarity targets, caption `i` describing scene `i`: `v2t` is
  0.22-0.35 for the described scene and 0.02-0.16 elsewhere; `t2t` is 1 on the diagonal and
  0.1 per attribute shared among background, shape and motion plus 0-0.05 of symmetric noise elsewhere (at most
  0.25, since two scenes of one video never share both background and shape).
- `stage2.jsonl`, instruction tuning: videos of 6-10 scenes, 8 records per video, each one question about one
  scene `{"id", "video", "scenes": [{"start", "end", "caption"}], "conversations", "v2t", "answer_scene"}`.
  `v2t` is `[user turns x scenes]`: 0.24-0.35 for the asked scene (`answer_scene`), 0.02-0.16 elsewhere.
- `eval.jsonl`: the stage-2 schema, 2 questions per held-out video of 12-14 scenes.

`write_niah_case` writes a needle-in-a-haystack case apart from the corpus: a haystack of scenes without one
background colour, a needle scene of that colour, and the question that colour names.

Within a video, no two scenes share both background and shape, neighbouring scenes never share a background,
at least 4 backgrounds appear in exactly one scene and the others in 2 or 3. Questions are about a scene whose
colour appears once, so that its colour names it: "what shape is in the {colour} scene?" (answer: the shape) or
"the {shape} in the {colour} scene moves where?" (answer: left, right, up or down). Shapes and motions are spread
evenly over a video's scenes, so each of them recurs and the answer read from a wrong scene is usually wrong.

Seeding: video `j` of split `i` (in the order of `SPLITS`) draws everything from `video_seed(seed, split, j)`,
`np.random.SeedSequence(seed, spawn_key=(i, j))`, the stream `SeedSequence(seed).spawn` gives it. Distinct keys
give independent streams, so evaluation videos never reuse a training seed, and a split's content does not change
when another split's size does. The same settings write byte-identical JSONL files and videos that decode to the
same frames, up to a few blocks that x264 may code differently from run to run.
"""

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from salova.video_writer import write_video

__all__ = [
    "BACKGROUNDS",
    "MOTIONS",
    "SHAPES",
    "SPLITS",
    "CorpusSettings",
    "generate_corpus",
    "video_seed",
    "write_niah_case",
]

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 215, 40),
    "orange": (245, 135, 20),
    "purple": (140, 50, 190),
    "pink": (245, 130, 200),
    "cyan": (40, 200, 210),
}
_INKS = {"white": (255, 255, 255), "black": (0, 0, 0)}
# Drawn by `_SHAPE_MASKS`: four silhouettes a 7x7-patch tower tells apart (a square and a diamond it mixes up with
# the circle and the cross).
SHAPES = ("circle", "triangle", "cross", "ring")
MOTIONS = ("left", "right", "up", "down")
SPLITS = ("stage1", "stage1_5", "stage2", "eval")
_VIDEO_PREFIXES = {"stage1": "s1", "stage1_5": "s15", "stage2": "s2", "eval": "ev"}

# The object's radius as a fraction of the frame side: 14 pixels once resized for a 56x56 vision tower, so the
# object spans about 4x4 of its 8-pixel patches and the shapes differ patch by patch.
_OBJECT_RADIUS = 0.25
# The object leaves a fading trail, as motion blur does, so that one frame shows the direction of motion: at the
# 1 FPS the model samples, a scene is only 2-4 frames. Copies every `_TRAIL_SPACING` radii behind it, nearest first.
_TRAIL_OPACITIES = (0.6, 0.35, 0.15)
_TRAIL_SPACING = 0.5
_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (row, column) steps
_TRAINING_SCENES = (6, 10)
_EVAL_SCENES = (12, 14)
_MIN_SINGLE_BACKGROUNDS = 4
_MAX_BACKGROUND_REPEATS = 3
_DESCRIBED_SCORES = (0.22, 0.35)
_ASKED_SCORES = (0.24, 0.35)
_OTHER_SCORES = (0.02, 0.16)
_T2T_PER_SHARED_ATTRIBUTE = 0.1
_T2T_NOISE = 0.05


@dataclass(frozen=True)
class CorpusSettings:
    """Sizes of the corpus. Long-video scenes last `scene_seconds` +- 1 s (whole frames, never under 2 s)."""

    frame_size: int = 64  # square frames, even
    # PySceneDetect's default minimum scene (15 frames), which the processor's detector keeps, is 1.5 s here, under
    # the shortest scene: the processor's defaults find every cut, as `salova ask` needs them to.
    fps: int = 10
    scene_seconds: float = 3.0
    stage1_clips: int = 64  # one-scene clips with a caption
    stage15_videos: int = 16  # 6-10 scenes, one caption per scene
    stage2_videos: int = 32  # 6-10 scenes, 8 question records each
    eval_videos: int = 8  # held out, 12-14 scenes, 2 question records each
    seed: int = 0

    def __post_init__(self):
        if self.frame_size < 16 or self.frame_size % 2:
            raise ValueError(f"frame_size must be even and at least 16 (H.264 4:2:0), got {self.frame_size}.")
        if self.fps < 1:
            raise ValueError(f"fps must be at least 1, got {self.fps}.")


def generate_corpus(
    out_dir: str | Path, settings: CorpusSettings = CorpusSettings(), progress: bool = False
) -> dict[str, Path]:
    """Writes videos under `out_dir/videos/` and the files stage1.jsonl, stage1_5.jsonl, stage2.jsonl, eval.jsonl.

    Returns `{split: path of its JSONL file}` for the splits of `SPLITS`. progress: a tqdm bar per split.
    """
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    splits: dict[str, tuple[int, Callable[..., list[dict]]]] = {
        "stage1": (settings.stage1_clips, _alignment_records),
        "stage1_5": (settings.stage15_videos, _knowledge_records),
        "stage2": (settings.stage2_videos, partial(_question_records, scene_counts=_TRAINING_SCENES, questions=8)),
        "eval": (settings.eval_videos, partial(_question_records, scene_counts=_EVAL_SCENES, questions=2)),
    }
    paths = {}
    for split in SPLITS:
        count, build_records = splits[split]
        paths[split] = out_dir / f"{split}.jsonl"
        with paths[split].open("w", encoding="utf-8") as jsonl:
            for video_index in tqdm(range(count), desc=split, disable=not progress):
                rng = np.random.default_rng(video_seed(settings.seed, split, video_index))
                video = f"videos/{_VIDEO_PREFIXES[split]}-{video_index + 1:06d}.mp4"
                for record in build_records(out_dir, video, settings, rng):
                    jsonl.write(json.dumps(record) + "\n")
    return paths


def video_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed stream of video `index` (from 0) of `split` in the corpus of `CorpusSettings.seed` `seed`."""
    return np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index))


def write_niah_case(
    out_dir: str | Path,
    needle_background: str,
    haystack_scenes: int = 40,
    needle_seconds: float = 3.0,
    settings: CorpusSettings = CorpusSettings(),
) -> dict:
    """Writes `haystack.mp4`, `haystack_scenes` scenes none of which has `needle_background` (neighbours never
    share one), and `needle.mp4`, one scene of that background lasting `needle_seconds`, into `out_dir`.

    Returns `{"haystack", "needle", "question", "answer"}`: paths, and a shape question the needle's colour names,
    worded as the stage-2 questions are. Seeded by `settings.seed` and the colour, apart from the corpus splits.
    """
    if needle_background not in BACKGROUNDS:
        raise ValueError(f"needle_background must be one of {list(BACKGROUNDS)}, got {needle_background!r}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(
        np.random.SeedSequence(settings.seed, spawn_key=(len(SPLITS), list(BACKGROUNDS).index(needle_background)))
    )
    others = [colour for colour in BACKGROUNDS if colour != needle_background]
    backgrounds = [_pick(others, rng)]
    while len(backgrounds) < haystack_scenes:
        backgrounds.append(_pick([colour for colour in others if colour != backgrounds[-1]], rng))
    haystack = [
        _scene(background, _pick(SHAPES, rng), _pick(MOTIONS, rng), _scene_frames(settings, rng), rng)
        for background in backgrounds
    ]
    needle_frames = max(round(needle_seconds * settings.fps), 2)
    needle = _scene(needle_background, _pick(SHAPES, rng), _pick(MOTIONS, rng), needle_frames, rng)
    _write(out_dir / "haystack.mp4", haystack, settings)
    _write(out_dir / "needle.mp4", [needle], settings)
    return {
        "haystack": out_dir / "haystack.mp4",
        "needle": out_dir / "needle.mp4",
        "question": f"what shape is in the {needle_background} scene?",
        "answer": needle.shape,
    }


@dataclass(frozen=True)
class _Scene:
    background: str
    shape: str
    motion: str
    ink: str
    num_frames: int
    lane: float  # the object's path across the frame, perpendicular to its motion, as a fraction of the side

    @property
    def caption(self) -> str:
        return f"a {self.ink} {self.shape} moves {self.motion} in the {self.background} scene"


@dataclass(frozen=True)
class _Question:
    text: str
    answer: str
    scene: int


def _alignment_records(out_dir: Path, video: str, settings: CorpusSettings, rng: np.random.Generator) -> list[dict]:
    num_frames = int(rng.integers(2 * settings.fps, 3 * settings.fps + 1))
    scene = _scene(_pick(list(BACKGROUNDS), rng), _pick(SHAPES, rng), _pick(MOTIONS, rng), num_frames, rng)
    _write(out_dir / video, [scene], settings)
    return [{"id": Path(video).stem, "video": video, "caption": scene.caption}]


def _knowledge_records(out_dir: Path, video: str, settings: CorpusSettings, rng: np.random.Generator) -> list[dict]:
    scenes = _plan_video(int(rng.integers(_TRAINING_SCENES[0], _TRAINING_SCENES[1] + 1)), settings, rng)
    _write(out_dir / video, scenes, settings)
    v2t = _video_to_text(range(len(scenes)), len(scenes), _DESCRIBED_SCORES, rng)
    t2t = _text_to_text(scenes, rng)
    timeline = _timeline(scenes, settings.fps)
    return [{"id": Path(video).stem, "video": video, "scenes": timeline, "v2t": _rounded(v2t), "t2t": _rounded(t2t)}]


def _question_records(
    out_dir: Path,
    video: str,
    settings: CorpusSettings,
    rng: np.random.Generator,
    scene_counts: tuple[int, int],
    questions: int,
) -> list[dict]:
    """`questions` records, one question each, about a video of `scene_counts` (an inclusive range) scenes."""
    scenes = _plan_video(int(rng.integers(scene_counts[0], scene_counts[1] + 1)), settings, rng)
    _write(out_dir / video, scenes, settings)
    timeline = _timeline(scenes, settings.fps)
    records = []
    for number, question in enumerate(_questions(scenes, questions, rng), 1):
        conversation = [{"role": "user", "content": question.text}, {"role": "assistant", "content": question.answer}]
        v2t = _video_to_text([question.scene], len(scenes), _ASKED_SCORES, rng)
        records.append(
            {
                "id": f"{Path(video).stem}-{number}",
                "video": video,
                "scenes": timeline,
                "conversations": conversation,
                "v2t": _rounded(v2t),
                "answer_scene": question.scene,
            }
        )
    return records


def _scene(background: str, shape: str, motion: str, num_frames: int, rng: np.random.Generator) -> _Scene:
    return _Scene(background, shape, motion, _pick(list(_INKS), rng), num_frames, float(rng.uniform(0.3, 0.7)))


def _plan_video(num_scenes: int, settings: CorpusSettings, rng: np.random.Generator) -> list[_Scene]:
    backgrounds = _background_sequence(num_scenes, rng)
    shapes = _spread_shapes(backgrounds, rng)
    rounds = math.ceil(num_scenes / len(MOTIONS))
    motions = [str(motion) for _ in range(rounds) for motion in rng.permutation(MOTIONS)][:num_scenes]
    return [
        _scene(background, shape, motion, _scene_frames(settings, rng), rng)
        for background, shape, motion in zip(backgrounds, shapes, motions, strict=True)
    ]


def _background_sequence(num_scenes: int, rng: np.random.Generator) -> list[str]:
    """Backgrounds of `num_scenes` (6 to 14) scenes: at least 4 appear once, the others 2 or 3 times, and no two
    neighbours share one (a cut must show)."""
    single = _pick(_single_background_counts(num_scenes), rng)
    repeated_scenes = num_scenes - single
    # Each repeated colour covers 2 or 3 scenes.
    low, high = math.ceil(repeated_scenes / _MAX_BACKGROUND_REPEATS), repeated_scenes // 2
    num_repeated = int(rng.integers(low, min(high, len(BACKGROUNDS) - single) + 1))
    repeats = np.full(num_repeated, 2)
    repeats[rng.choice(num_repeated, repeated_scenes - 2 * num_repeated, replace=False)] += 1
    colours = [str(colour) for colour in rng.permutation(list(BACKGROUNDS))]
    repeated = colours[single : single + num_repeated]
    pool = colours[:single] + [colour for colour, n in zip(repeated, repeats, strict=True) for _ in range(n)]
    # No colour covers more than 3 of at least 6 scenes, so a random order often keeps neighbours apart: retry.
    while True:
        order = [str(colour) for colour in rng.permutation(pool)]
        if all(before != after for before, after in pairwise(order)):
            return order


def _single_background_counts(num_scenes: int) -> list[int]:
    """How many colours may appear once, the remaining scenes taking 2 or 3 each of the remaining colours."""
    counts = []
    for single in range(_MIN_SINGLE_BACKGROUNDS, min(num_scenes, len(BACKGROUNDS)) + 1):
        rest, free_colours = num_scenes - single, len(BACKGROUNDS) - single
        if rest == 0 or (rest >= 2 and math.ceil(rest / _MAX_BACKGROUND_REPEATS) <= free_colours):
            counts.append(single)
    return counts


def _spread_shapes(backgrounds: list[str], rng: np.random.Generator) -> list[str]:
    """A shape per scene, the least used so far among those not yet on that background (a random one of them)."""
    uses = dict.fromkeys(SHAPES, 0)
    shapes, taken = [], set()
    for background in backgrounds:
        free = [shape for shape in SHAPES if (background, shape) not in taken]
        fewest = min(uses[shape] for shape in free)
        shape = _pick([shape for shape in free if uses[shape] == fewest], rng)
        uses[shape] += 1
        shapes.append(shape)
        taken.add((background, shape))
    return shapes


def _scene_frames(settings: CorpusSettings, rng: np.random.Generator) -> int:
    shortest = max(round((settings.scene_seconds - 1) * settings.fps), 2 * settings.fps)
    longest = max(round((settings.scene_seconds + 1) * settings.fps), shortest)
    return int(rng.integers(shortest, longest + 1))


def _questions(scenes: list[_Scene], count: int, rng: np.random.Generator) -> list[_Question]:
    """`count` (at most 8) distinct questions about the scenes with a background of their own (at least 4),
    alternating the two kinds from a random one."""
    uses = Counter(scene.background for scene in scenes)
    named = [(index, scene) for index, scene in enumerate(scenes) if uses[scene.background] == 1]
    about_shape = [_Question(f"what shape is in the {s.background} scene?", s.shape, index) for index, s in named]
    about_motion = [
        _Question(f"the {s.shape} in the {s.background} scene moves where?", s.motion, index) for index, s in named
    ]
    kinds = [[kind[i] for i in rng.permutation(len(kind))] for kind in (about_shape, about_motion)]
    first_kind = int(rng.integers(2))
    return [kinds[(first_kind + number) % 2][number // 2] for number in range(count)]


def _timeline(scenes: list[_Scene], fps: int) -> list[dict]:
    """`{"start", "end", "caption"}` per scene: its frames `[first, last]` span `[first / fps, (last + 1) / fps)`."""
    timeline, first = [], 0
    for scene in scenes:
        end = first + scene.num_frames
        timeline.append({"start": round(first / fps, 4), "end": round(end / fps, 4), "caption": scene.caption})
        first = end
    return timeline


def _video_to_text(
    targets: Sequence[int], num_scenes: int, target_scores: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """`(len(targets), num_scenes)` scores: row `i` is in `target_scores` at scene `targets[i]`, low elsewhere."""
    scores = rng.uniform(*_OTHER_SCORES, size=(len(targets), num_scenes))
    scores[np.arange(len(targets)), list(targets)] = rng.uniform(*target_scores, size=len(targets))
    return scores


def _text_to_text(scenes: list[_Scene], rng: np.random.Generator) -> np.ndarray:
    """`(N, N)` symmetric caption similarities: 1 on the diagonal, by shared attributes plus noise elsewhere."""
    shared = sum(
        np.equal.outer(values, values).astype(float)
        for values in (
            [scene.background for scene in scenes],
            [scene.shape for scene in scenes],
            [scene.motion for scene in scenes],
        )
    )
    noise = rng.uniform(0.0, _T2T_NOISE, size=shared.shape)
    similarity = _T2T_PER_SHARED_ATTRIBUTE * shared + (noise + noise.T) / 2
    np.fill_diagonal(similarity, 1.0)
    return similarity


def _rounded(scores: np.ndarray) -> list[list[float]]:
    return np.round(scores, 4).tolist()


def _pick(options: Sequence, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _write(path: Path, scenes: list[_Scene], settings: CorpusSettings) -> None:
    # One encoder thread: for files this small, x264's threads cost more to start and join than they save.
    write_video(path, _frames(scenes, settings.frame_size), fps=settings.fps, encoder_options={"threads": "1"})


def _frames(scenes: list[_Scene], size: int) -> Iterator[np.ndarray]:
    """The `(size, size, 3)` uint8 RGB frames of `scenes`, back to back."""
    rows, columns = np.mgrid[:size, :size]
    radius = _OBJECT_RADIUS * size
    for scene in scenes:
        inside = _SHAPE_MASKS[scene.shape]
        background = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
        ink = np.array(_INKS[scene.ink], dtype=np.float32)
        behind = -np.array(_DIRECTIONS[scene.motion]) * _TRAIL_SPACING * radius
        for centre in _centres(scene, size, radius):
            frame = np.empty((size, size, 3), dtype=np.float32)
            frame[:] = background
            # Faintest copy first, so nearer copies and the object itself paint over it.
            for distance, opacity in reversed(list(enumerate(_TRAIL_OPACITIES, start=1))):
                row, column = centre + distance * behind
                frame[inside(rows - row, columns - column, radius)] = (1 - opacity) * background + opacity * ink
            frame[inside(rows - centre[0], columns - centre[1], radius)] = ink
            yield frame.round().astype(np.uint8)


def _centres(scene: _Scene, size: int, radius: float) -> np.ndarray:
    """`(num_frames, 2)` (row, column) of the object's centre: it crosses the frame along its lane, edge to edge."""
    margin = radius + 1
    towards_origin = np.linspace(size - margin, margin, scene.num_frames)  # moving left or up
    travel = towards_origin if scene.motion in ("left", "up") else towards_origin[::-1]
    lane = np.full(scene.num_frames, scene.lane * size)
    rows, columns = (lane, travel) if scene.motion in ("left", "right") else (travel, lane)
    return np.stack([rows, columns], axis=1)


# Masks over pixel offsets `(dy, dx)` from the object's centre, for an object of the given radius.
def _circle(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    return dy**2 + dx**2 <= radius**2


def _ring(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    return _circle(dy, dx, radius) & ~_circle(dy, dx, 0.55 * radius)


def _cross(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    arm = 0.3 * radius
    vertical = (np.abs(dx) <= arm) & (np.abs(dy) <= radius)
    horizontal = (np.abs(dy) <= arm) & (np.abs(dx) <= radius)
    return vertical | horizontal


def _triangle(dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    # Apex up at -radius, base at 0.8 radius about as wide as the circle.
    return (dy <= 0.8 * radius) & (np.abs(dx) <= 0.55 * (dy + radius))


_SHAPE_MASKS = {
    "circle": _circle,
    "triangle": _triangle,
    "cross": _cross,
    "ring": _ring,
}

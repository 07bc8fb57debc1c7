"""`SalovaVideoIndex`: everything SALOVA computes from a video before it sees the question, stored once per video.

In SALOVA (Kim et al., CVPR 2025) frames -> vision tower -> ST-Connector is independent of the question; only
the router and the LLM read it. The index keeps the connector's outputs (focus latents and one routing token per
segment, before the projector), the segment layout, one thumbnail per segment taken from the source frames, and
the provenance that decides whether the index still fits a model: the video file's content hash, a fingerprint
of the weights it came from (vision tower + connector), the dtype, and the processor's video settings.

`EncodedVideo` is that computation alone (what every answer reads); `SalovaVideoIndex` adds what a video file's
index shows and stores. `build_index` runs in stages a caller may time or run apart: `current_provenance` (the
file's hash), `decode_video` (decoding, scene cuts, segments, frames), `encode_frames` (tower and connector) and
`SalovaVideoIndex.from_encoded` (thumbnails).

On disk an index is one safetensors file (tensors + JSON metadata), written to a temporary file and renamed, so
an interrupted run never leaves a partial index. `IndexCache` keeps them in a folder keyed by the fingerprints.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

FORMAT_VERSION = 1
THUMBNAIL_HEIGHT = 120
INDEX_DIR_VARIABLE = "SALOVA_INDEX_DIR"
ENCODED_NAMES = ("latents", "routing_tokens", "frames_per_segment", "segment_times")
TENSOR_NAMES = (*ENCODED_NAMES, "thumbnails")


class IndexMismatchError(ValueError):
    """The index was made from another video file, other weights, another dtype or other processor settings."""


class CorruptIndexError(ValueError):
    """The index file is truncated, damaged or not an index."""


@dataclass(frozen=True)
class Provenance:
    video_sha256: str
    weights_fingerprint: str
    dtype: str
    video_settings_fingerprint: str

    def mismatches(self, expected: "Provenance") -> list[str]:
        labels = {
            "video_sha256": "video content sha256",
            "weights_fingerprint": "vision tower + connector weights fingerprint",
            "dtype": "dtype",
            "video_settings_fingerprint": "video processor settings fingerprint",
        }
        return [
            f"{label}: index {getattr(self, name)} != current {getattr(expected, name)}"
            for name, label in labels.items()
            if getattr(self, name) != getattr(expected, name)
        ]

    @property
    def key(self) -> str:
        """File name stem in a cache folder: the video's hash, then one hash of everything else."""
        rest = hashlib.sha256(f"{self.weights_fingerprint}|{self.dtype}|{self.video_settings_fingerprint}".encode())
        return f"{self.video_sha256[:24]}-{rest.hexdigest()[:16]}"


@dataclass
class EncodedVideo:
    """What the model computes from a video before it sees a question: the input of every answer.

    latents (`(S, num_latents, width)`, the model's dtype): focus latents of each segment, before the projector.
    routing_tokens (`(S, width)`): routing token of each segment, before the projector.
    frames_per_segment (`(S,)` long): sampled frames of each segment.
    segment_times (`(S, 2)` float64): start and end seconds of each segment.
    """

    latents: torch.Tensor
    routing_tokens: torch.Tensor
    frames_per_segment: torch.LongTensor
    segment_times: torch.Tensor

    @property
    def num_segments(self) -> int:
        return len(self.frames_per_segment)

    def model_inputs(self, device=None, dtype=None) -> dict:
        """What `forward()`/`generate()` take in place of the frames: `video_latents`, `video_routing_tokens` and
        `segments_per_video` (one video)."""
        return {
            "video_latents": self.latents.to(device, dtype),
            "video_routing_tokens": self.routing_tokens.to(device, dtype),
            "segments_per_video": torch.tensor([self.num_segments], device=device),
        }


@dataclass
class SalovaVideoIndex(EncodedVideo):
    """
    An `EncodedVideo` of a video file, with what it takes to show it and to store it:
    thumbnails (`(S, h, w, 3)` uint8): the sampled frame at the middle of each segment as displayed (rotation
        applied, aspect kept), `THUMBNAIL_HEIGHT` high, taken in the decode pass.
    video: the video's file name. duration: its length in seconds. provenance: see `Provenance`.
    video_settings: the processor's video settings, as recorded (their fingerprint is in `provenance`).
    """

    thumbnails: torch.Tensor
    video: str
    duration: float
    provenance: Provenance
    video_settings: dict

    @classmethod
    def from_encoded(
        cls, encoded: EncodedVideo, thumbnails: torch.Tensor, video: str | Path, provenance: Provenance, processor
    ) -> "SalovaVideoIndex":
        """The index of the file `video`, encoded as `encoded`, with the `segment_thumbnails` of its decode."""
        video = Path(video)
        times = encoded.segment_times
        return cls(
            **{name: getattr(encoded, name) for name in ENCODED_NAMES},
            thumbnails=thumbnails,
            video=video.name,
            duration=float(times[-1, 1]),  # the last segment ends with the video
            provenance=provenance,
            video_settings=video_settings(processor),
        )

    def check(self, expected: Provenance, path: str | Path = "index") -> None:
        """Raises `IndexMismatchError` naming both fingerprints of every field that differs."""
        problems = self.provenance.mismatches(expected)
        if problems:
            raise IndexMismatchError(
                f"{path} does not fit this video and model ({'; '.join(problems)}). Rebuild it with --reindex."
            )

    def save(self, path: str | Path) -> Path:
        """Writes the index atomically: a temporary file in the same folder, renamed over `path` when complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).contiguous() for name in TENSOR_NAMES}
        metadata = {
            "format_version": FORMAT_VERSION,
            "video": self.video,
            "duration": self.duration,
            "provenance": asdict(self.provenance),
            "video_settings": self.video_settings,
            "checksum": _tensor_checksum(tensors),
        }
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata={"salova_index": json.dumps(metadata)})
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, expected: Provenance | None = None) -> "SalovaVideoIndex":
        """Reads an index; raises `CorruptIndexError` for a damaged file and `IndexMismatchError` (with
        `expected`) for one made from another video, other weights, dtype or settings."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Index file not found: {path}")
        try:
            tensors = load_file(path)
            with open(path, "rb") as handle:
                header_length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(header_length))
            metadata = json.loads(header["__metadata__"]["salova_index"])
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            raise CorruptIndexError(
                f"{path} is not a readable SALOVA index (truncated or corrupt: {error}). Rebuild it with --reindex."
            ) from error
        if metadata.get("format_version") != FORMAT_VERSION or set(tensors) != set(TENSOR_NAMES):
            raise CorruptIndexError(
                f"{path}: index format {metadata.get('format_version')} with tensors {sorted(tensors)}; this "
                f"version reads format {FORMAT_VERSION} with {sorted(TENSOR_NAMES)}. Rebuild it with --reindex."
            )
        if _tensor_checksum(tensors) != metadata["checksum"]:
            raise CorruptIndexError(f"{path}: tensor data fails its checksum (corrupt). Rebuild it with --reindex.")
        index = cls(
            **{name: tensors[name] for name in TENSOR_NAMES},
            video=metadata["video"],
            duration=metadata["duration"],
            provenance=Provenance(**metadata["provenance"]),
            video_settings=metadata["video_settings"],
        )
        if expected is not None:
            index.check(expected, path)
        return index


def decode_video(processor, video, progress: bool | None = False, **video_kwargs):
    """`video` (a path, decoded frames with `video_fps`, or an image) decoded, cut and segmented by the processor's
    video processor (`video_kwargs`, e.g. `video_fps` or `segment_boundaries`, go to it): its
    `pixel_values_videos`, `frames_per_segment` and `segment_times`."""
    return processor.video_processor(videos=[video], progress=progress, return_tensors="pt", **video_kwargs)


def encode_frames(model, frames, progress: bool | None = False) -> EncodedVideo:
    """The model's question-independent half (`get_video_features`: vision tower and connector) run once over the
    frames `decode_video` returned."""
    frames_per_segment = frames["frames_per_segment"]
    pixel_values = frames["pixel_values_videos"].to(model.device, model.dtype)
    with torch.no_grad(), _encoding_progress(model, len(pixel_values), len(frames_per_segment), progress):
        features = model.get_video_features(pixel_values, frames_per_segment.to(model.device))
    return EncodedVideo(
        latents=features.last_hidden_state.cpu(),
        routing_tokens=features.pooler_output.cpu(),
        frames_per_segment=frames_per_segment,
        segment_times=frames["segment_times"],
    )


def encode_video(model, processor, video, progress: bool | None = False, **video_kwargs) -> EncodedVideo:
    """`decode_video`, then `encode_frames`."""
    return encode_frames(model, decode_video(processor, video, progress, **video_kwargs), progress)


def build_index(
    model, processor, video: str | Path, progress: bool = True, provenance: Provenance | None = None
) -> SalovaVideoIndex:
    """The index of the file `video`, in its stages: `current_provenance` (the file's hash), `decode_video` (with
    the thumbnails), `encode_frames`, then `SalovaVideoIndex.from_encoded`.

    `provenance` saves hashing the file again when the caller has it.
    """
    provenance = provenance or current_provenance(model, processor, video)
    frames = decode_video(processor, str(video), progress, thumbnail_height=THUMBNAIL_HEIGHT)
    encoded = encode_frames(model, frames, progress)
    return SalovaVideoIndex.from_encoded(encoded, frames["segment_thumbnails"], video, provenance, processor)


class IndexCache:
    """A folder of indexes keyed by their provenance: `--index-dir`, else `$SALOVA_INDEX_DIR`, else
    `<user cache dir>/salova/indexes`."""

    def __init__(self, folder: str | Path | None = None):
        if folder is None:
            folder = os.environ.get(INDEX_DIR_VARIABLE) or _user_cache_dir() / "salova" / "indexes"
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"Index folder {self.folder} exists and is not a folder.")

    def path_for(self, provenance: Provenance) -> Path:
        return self.folder / f"{provenance.key}.safetensors"

    def get_or_build(
        self,
        model,
        processor,
        video: str | Path,
        reindex: bool = False,
        index_file: str | Path | None = None,
        progress: bool = True,
    ) -> tuple[SalovaVideoIndex, str, float]:
        """The index of `video` for this model: loaded (`"reused"`) or built and stored (`"built"`), with the
        seconds it took. `index_file` names the file instead of the cache's; `reindex` rebuilds it.

        Processes and threads sharing the folder build one video's index once: the first holds the index file's
        lock while it builds, the others wait for it and load what it stored."""
        started = time.perf_counter()
        provenance = current_provenance(model, processor, video)
        path = Path(index_file) if index_file is not None else self.path_for(provenance)
        with _exclusive(path):
            if path.is_file() and not reindex:
                return SalovaVideoIndex.load(path, provenance), "reused", time.perf_counter() - started
            index = build_index(model, processor, video, progress, provenance)
            index.save(path)
        return index, "built", time.perf_counter() - started


@contextlib.contextmanager
def _exclusive(path: Path):
    """An exclusive `flock` on the lock file beside `path` (`.<name>.lock`), held inside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def current_provenance(model, processor, video: str | Path) -> Provenance:
    return Provenance(
        video_sha256=file_sha256(video),
        weights_fingerprint=weights_fingerprint(model),
        dtype=str(model.dtype).removeprefix("torch."),
        video_settings_fingerprint=_json_sha256(video_settings(processor)),
    )


def video_settings(processor) -> dict:
    """The settings of the processor's `SalovaVideoProcessor`, which decide the frames the tower sees (JSON-ready)."""
    settings = processor.video_processor.to_dict()
    for display_only in ("progress", "thumbnail_height"):  # a bar, a picture for people: no frame the tower sees
        settings.pop(display_only, None)
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Video file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def weights_fingerprint(model) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the weights an index depends on: tower + connector.

    Cached on the model object: weights do not change while an assistant runs.
    """
    cached = getattr(model, "_salova_index_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for module_name in ("vision_tower", "connector"):
        for name, tensor in sorted(getattr(model.model, module_name).state_dict().items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{module_name}.{name}|{data.dtype}|{tuple(data.shape)}".encode())
            digest.update(data.flatten().view(torch.uint8).numpy().tobytes())
    model._salova_index_fingerprint = digest.hexdigest()[:32]
    return model._salova_index_fingerprint


def _encoding_progress(model, num_frames: int, num_segments: int, enabled: bool):
    """Progress bars fed by forward hooks on the tower (frames) and the connector (segments)."""

    class Bars:
        def __enter__(self):
            self.frames = tqdm(total=num_frames, unit="frame", desc="encoding frames", disable=not enabled)
            self.segments = tqdm(total=num_segments, unit="segment", desc="encoding segments", disable=not enabled)
            self.hooks = [
                model.model.vision_tower.register_forward_hook(self._on_frames, with_kwargs=True),
                model.model.connector.register_forward_hook(self._on_segments),
            ]
            return self

        def _on_frames(self, module, args, kwargs, output):
            self.frames.update(len(kwargs.get("pixel_values", args[0] if args else [])))

        def _on_segments(self, module, args, output):
            self.segments.update(len(args[0]))

        def __exit__(self, *exc_info):
            for hook in self.hooks:
                hook.remove()
            self.frames.close()
            self.segments.close()

    return Bars()


def _tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _json_sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def _user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")

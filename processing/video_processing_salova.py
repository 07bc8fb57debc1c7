"""`SalovaVideoProcessor`: videos in, the frames of each segment out, ready for the vision tower.

One pass per video decodes it, detects scene cuts on every frame and keeps one frame per `1 / fps` seconds,
resized for the tower; the segment policy then groups the kept frames into segments, which are rescaled and
normalised. Its settings are the class attributes below, written once; a setting passed at creation or at call
time overrides them, and the decoder, detector and segment policy are built from the settings of each call, so
changing an attribute after creation takes effect on the next call.

transformers' `BaseVideoProcessor` is tied to torchvision (`TorchvisionBackend`), which has no working CPU build
next to the torch this package runs on; this class combines `VideoProcessorMixin` (kwargs, defaults, saving and
loading) with the PIL/NumPy `PilBackend` instead. Resizing does not go through the backend: it happens in the
decode loop with PyAV's scaler (`FrameTransform`), so a long video never holds full-size RGB frames.
"""

import inspect
import warnings

import cv2
import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling, SizeDict, validate_kwargs
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import VideoMetadata

from .frame_preprocessing import FrameTransform
from .frame_sampling import SAMPLING_FPS
from .scene_detection import SceneCutDetector
from .segmentation import Segment, SegmentationPolicy, plan_segments
from .video_decoding import DecodedVideo, decode_video
from .video_frames import DEFAULT_MAX_FRAME_PIXELS

# PyAV's scaler names for the PIL resampling filters `resample` may hold.
PYAV_INTERPOLATION = {
    PILImageResampling.NEAREST: "POINT",
    PILImageResampling.BOX: "AREA",
    PILImageResampling.BILINEAR: "BILINEAR",
    PILImageResampling.BICUBIC: "BICUBIC",
    PILImageResampling.LANCZOS: "LANCZOS",
}
_DETECTOR_DEFAULTS = inspect.signature(SceneCutDetector.__init__).parameters
# Each field of the segment policy, by the setting that holds it (the router's table goes by its model config name).
POLICY_SETTINGS = {name: name for name in SegmentationPolicy.__dataclass_fields__} | {
    "max_segments": "router_max_segments"
}
# Old setting names a saved video_preprocessor_config.json may carry -> their current names.
RENAMED_SETTINGS = {"max_segments": "router_max_segments"}


class SalovaVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    segmenter (`str`): `"scenes"`, `"fixed_windows"` or `"scene_tiling"` (see `segmentation.py`).
    max_frames_per_segment (`int`): the connector's temporal table (the model config's, SALOVA: 2160).
    router_max_segments (`int`): the router's segment position table (the model config's, SALOVA: 256).
    window_seconds (`float`): window length of `"fixed_windows"` and of uncut videos with `split_uncut_videos`.
    split_uncut_videos (`bool`): cut a video without scene cut into windows.
    tiling_threshold_std (`float`): depth threshold of `"scene_tiling"` in standard deviations.
    detector_threshold, detector_min_content, detector_min_scene_len: PySceneDetect AdaptiveDetector settings.
    max_frame_pixels (`int`): videos with larger frames are refused before decoding.
    progress (`bool`): show a decoding progress bar (`None`: for long videos only).
    thumbnail_height (`int`): also return `segment_thumbnails`, the sampled frame at the middle of each segment as
        displayed, this many pixels high, taken in the decode pass (`None`: not).
    """

    segmenter: str
    max_frames_per_segment: int
    router_max_segments: int
    window_seconds: int | float
    split_uncut_videos: bool
    tiling_threshold_std: int | float
    detector_threshold: int | float
    detector_min_content: int | float
    detector_min_scene_len: int
    max_frame_pixels: int
    progress: bool | None
    thumbnail_height: int | None


class SalovaVideoProcessor(VideoProcessorMixin, PilBackend):
    r"""
    Videos (paths, binary file objects, decoded frames or images) -> `pixel_values_videos` `(F, 3, H, W)`, the
    frames of all segments of all videos in order; `frames_per_segment` `(S,)`; `segments_per_video` `(B,)`;
    `segment_times` `(S, 2)` start and end seconds of each segment.

    Decoded frames are a `(T, H, W, C)` or `(T, C, H, W)` array (the layout is read from the shape where it is
    unambiguous, else from `input_data_format`) or a list of PIL images. With their frame rate (`video_fps`, or
    `video_metadata`) they are sampled at `fps` like a file; without one they are taken as already sampled at
    `fps`, every frame kept, as transformers' video processors do with decoded videos without metadata.
    """

    resample = PILImageResampling.BICUBIC
    # SigLIP: squash to the square input and map to [-1, 1]. CLIP towers use `size={"shortest_edge": S}`,
    # `do_center_crop` and `crop_size` instead (see `TOWER_PRESETS`).
    size = {"height": 384, "width": 384}
    do_resize = True
    do_center_crop = False
    crop_size = None
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    do_convert_rgb = True
    do_sample_frames = True
    fps = SAMPLING_FPS
    segmenter = SegmentationPolicy.segmenter
    max_frames_per_segment = SegmentationPolicy.max_frames_per_segment
    router_max_segments = SegmentationPolicy.max_segments
    window_seconds = SegmentationPolicy.window_seconds
    split_uncut_videos = SegmentationPolicy.split_uncut_videos
    tiling_threshold_std = SegmentationPolicy.tiling_threshold_std
    detector_threshold = _DETECTOR_DEFAULTS["adaptive_threshold"].default
    detector_min_content = _DETECTOR_DEFAULTS["min_content_val"].default
    detector_min_scene_len = _DETECTOR_DEFAULTS["min_scene_len"].default
    max_frame_pixels = DEFAULT_MAX_FRAME_PIXELS
    progress = None
    thumbnail_height = None
    valid_kwargs = SalovaVideoProcessorKwargs
    model_input_names = ["pixel_values_videos", "frames_per_segment", "segments_per_video", "segment_times"]

    def __init__(self, **kwargs: Unpack[SalovaVideoProcessorKwargs]):
        super().__init__(**current_names(kwargs, RENAMED_SETTINGS, type(self).__name__))
        self._validate_preprocess_kwargs(**{name: getattr(self, name) for name in self._valid_kwargs_names})

    def _validate_preprocess_kwargs(self, **kwargs):
        super()._validate_preprocess_kwargs(**kwargs)
        self.frame_transform(**kwargs)
        self.segmentation_policy(**kwargs)
        if kwargs.get("fps") is None or kwargs["fps"] <= 0:
            raise ValueError(f"fps (frames sampled per second) must be positive, got {kwargs.get('fps')}.")
        if kwargs.get("thumbnail_height") is not None and kwargs["thumbnail_height"] < 2:
            raise ValueError(f"thumbnail_height must be at least 2 pixels, got {kwargs['thumbnail_height']}.")

    def frame_transform(self, size=None, do_resize=None, do_center_crop=None, crop_size=None, resample=None, **_):
        """The per-frame resize of these settings (the instance's where not given)."""
        size = self._setting("size", size)
        size = size if isinstance(size, SizeDict) else SizeDict(**size)
        if not self._setting("do_resize", do_resize):
            raise ValueError("do_resize=False is not supported: the vision tower takes frames of one fixed size.")
        resample = self._setting("resample", resample)
        if resample not in PYAV_INTERPOLATION:
            raise ValueError(f"resample must be one of {sorted(PYAV_INTERPOLATION)}, got {resample!r}.")
        interpolation = PYAV_INTERPOLATION[PILImageResampling(resample)]
        if self._setting("do_center_crop", do_center_crop):
            crop = self._setting("crop_size", crop_size)
            crop = crop if isinstance(crop, SizeDict) else SizeDict(**(crop or {}))
            if not size.shortest_edge or crop.height != size.shortest_edge or crop.width != size.shortest_edge:
                raise ValueError(
                    "With do_center_crop, size must be {'shortest_edge': S} and crop_size {'height': S, 'width': S} "
                    f"(a square crop of the resized frame), got size={dict(size)}, crop_size={dict(crop)}."
                )
            return FrameTransform(size.shortest_edge, "shortest_edge_crop", interpolation)
        if not size.height or size.height != size.width:
            raise ValueError(f"size must be a square {{'height': S, 'width': S}}, got {dict(size)}.")
        return FrameTransform(size.height, "squash", interpolation)

    def segmentation_policy(self, **kwargs) -> SegmentationPolicy:
        """The segment policy of these settings (the instance's where not given)."""
        return SegmentationPolicy(
            **{field: self._setting(name, kwargs.get(name)) for field, name in POLICY_SETTINGS.items()}
        )

    def cut_detector(self, **kwargs) -> SceneCutDetector:
        """A fresh scene-cut detector of these settings (the instance's where not given)."""
        return SceneCutDetector(
            self._setting("detector_threshold", kwargs.get("detector_threshold")),
            self._setting("detector_min_content", kwargs.get("detector_min_content")),
            self._setting("detector_min_scene_len", kwargs.get("detector_min_scene_len")),
        )

    def process_video(
        self, video, video_fps: float | None = None, segment_boundaries: list[float] | None = None, **kwargs
    ) -> tuple[DecodedVideo, list[Segment]]:
        """Decodes one video (scene cuts and sampled frames in one pass) and plans its segments.

        `segment_boundaries` (segment starts in seconds, e.g. a dataset's scenes) replace the segmenter; the
        detector is then not run. `kwargs` override the processor's settings for this call.
        """
        video = _channels_last(video, kwargs.get("input_data_format"))
        fps = self._setting("fps", kwargs.get("fps"))
        in_memory = isinstance(video, (np.ndarray, list, tuple)) and not _is_single_image(video)
        sample = self._setting("do_sample_frames", kwargs.get("do_sample_frames"))
        if in_memory and (video_fps is None or not sample):
            video_fps = fps  # decoded frames without a frame rate are taken as already sampled
        elif not sample and not _is_single_image(video) and not isinstance(video, Image.Image):
            raise ValueError(
                "do_sample_frames=False keeps every frame of decoded frames; a video file is always sampled at fps."
            )
        policy = self.segmentation_policy(**kwargs)
        detect = segment_boundaries is None and policy.segmenter == "scenes"
        decoded = decode_video(
            video,
            self.frame_transform(**kwargs),
            fps,
            cut_detector=self.cut_detector(**kwargs) if detect else None,
            video_fps=video_fps,
            max_frame_pixels=self._setting("max_frame_pixels", kwargs.get("max_frame_pixels")),
            progress=self._setting("progress", kwargs.get("progress")),
            thumbnail_height=self._setting("thumbnail_height", kwargs.get("thumbnail_height")),
        )
        segments = plan_segments(
            decoded.timestamps,
            decoded.duration,
            policy,
            cut_times=decoded.cut_times,
            frames=decoded.frames,
            boundaries=segment_boundaries,
            name=decoded.name,
        )
        return decoded, segments

    def preprocess(
        self,
        videos,
        video_fps: float | list[float | None] | None = None,
        segment_boundaries: list[list[float] | None] | None = None,
        **kwargs: Unpack[SalovaVideoProcessorKwargs],
    ) -> BatchFeature:
        """videos: one video or a list of them (a list of lists holds one video each, as chat templates give).

        video_fps: the frame rate of decoded frames, one for all or one per video (or `video_metadata`).
        segment_boundaries: per video, segment starts in seconds that replace the segmenter (or `None`).
        """
        validate_kwargs(
            captured_kwargs=kwargs.keys(),
            valid_processor_keys=list(self.valid_kwargs.__annotations__) + ["return_tensors"],
        )
        validate_typed_dict(self.valid_kwargs, kwargs)
        kwargs = {name: value for name, value in kwargs.items() if value is not None}
        if "num_frames" in kwargs:
            raise ValueError(
                "num_frames is not supported: SALOVA samples frames by time (fps) and the segment policy groups them."
            )
        settings = {name: kwargs.get(name, getattr(self, name, None)) for name in self._valid_kwargs_names}
        settings = {**settings, **self._standardize_kwargs(**settings)}
        self._validate_preprocess_kwargs(**settings)

        video_list = make_video_list(videos, video_fps)
        rates = _per_video(video_fps, video_list, "video_fps")
        metadata = kwargs.get("video_metadata")
        if metadata is not None:
            rates = [_metadata_fps(item) for item in _per_video(metadata, video_list, "video_metadata")]
        boundaries = _per_video(segment_boundaries, video_list, "segment_boundaries")
        processed = [
            self.process_video(video, rate, bounds, **settings)
            for video, rate, bounds in zip(video_list, rates, boundaries, strict=True)
        ]
        return BatchFeature(self._video_tensors(processed, settings), tensor_type=kwargs.get("return_tensors"))

    def _video_tensors(self, processed: list[tuple[DecodedVideo, list[Segment]]], settings: dict) -> dict:
        frames, frames_per_segment, segment_times, segments_per_video = [], [], [], []
        for decoded, segments in processed:
            used = sum(segment.num_frames for segment in segments)
            frames.append(decoded.frames[:used])
            frames_per_segment += [segment.num_frames for segment in segments]
            segment_times += [(segment.start, segment.end) for segment in segments]
            segments_per_video.append(len(segments))
        frames = np.concatenate(frames)
        thumbnails = {}
        if settings["thumbnail_height"] is not None:
            thumbnails["segment_thumbnails"] = torch.from_numpy(_segment_thumbnails(processed))
        # One table lookup per pixel instead of three passes over the float frames; the table is those passes
        # applied to the 256 byte values, so the floats are the same to the bit.
        values = cv2.LUT(frames.reshape(-1, frames.shape[2], 3), self._value_table(settings).numpy()[:, None])
        return {
            "pixel_values_videos": torch.from_numpy(values.reshape(frames.shape)).permute(0, 3, 1, 2),
            "frames_per_segment": torch.tensor(frames_per_segment, dtype=torch.long),
            "segments_per_video": torch.tensor(segments_per_video, dtype=torch.long),
            "segment_times": torch.tensor(segment_times, dtype=torch.float64),
            **thumbnails,
        }

    @staticmethod
    def _value_table(settings: dict) -> torch.Tensor:
        """`(256, 3)` float32: each channel's input value for each byte, rescaled and normalised as configured."""
        table = torch.arange(256, dtype=torch.float32).view(-1, 1).repeat(1, 3)
        if settings["do_rescale"]:
            table.mul_(settings["rescale_factor"])
        if settings["do_normalize"]:
            table.sub_(torch.tensor(settings["image_mean"], dtype=torch.float32))
            table.div_(torch.tensor(settings["image_std"], dtype=torch.float32))
        return table

    def _setting(self, name: str, value):
        return getattr(self, name) if value is None else value


def _segment_thumbnails(processed: list[tuple[DecodedVideo, list[Segment]]]) -> np.ndarray:
    """`(S, height, width, 3)` uint8: the thumbnail of the sampled frame at the middle of each segment."""
    thumbnails = [
        decoded.thumbnails[segment.first_frame + segment.num_frames // 2]
        for decoded, segments in processed
        for segment in segments
    ]
    if len({thumbnail.shape for thumbnail in thumbnails}) > 1:
        raise ValueError(
            "thumbnail_height: the videos are displayed at different aspects, so their thumbnails differ in width; "
            "ask for the thumbnails of one video at a time."
        )
    return np.stack(thumbnails)


def current_names(settings: dict, renamed: dict[str, str], owner: str) -> dict:
    """`settings` with each old name of `renamed` (a saved file's, or a caller's) replaced by its current name,
    with a `FutureWarning`."""
    settings = dict(settings)
    for old, new in renamed.items():
        if old not in settings:
            continue
        value = settings.pop(old)
        if new in settings and settings[new] != value:
            raise ValueError(f"{owner}: {old}={value!r} and {new}={settings[new]!r} name one setting; give {new} only.")
        warnings.warn(
            f"{owner}: the setting {old!r} is now named {new!r}; the old name will stop loading in a future version "
            "(save the processor again to update its file).",
            FutureWarning,
            stacklevel=3,
        )
        settings[new] = value
    return settings


def make_video_list(videos, video_fps=None) -> list:
    """One entry per video: a single video, a list of videos, or a list of one-video lists (chat templates)."""
    if isinstance(videos, np.ndarray) and videos.ndim == 5:
        return list(videos)
    if not isinstance(videos, (list, tuple)) or not videos:
        return [videos]
    # A list of PIL images with a frame rate is one video given as its frames.
    if video_fps is not None and not isinstance(video_fps, (list, tuple)):
        if all(isinstance(item, Image.Image) for item in videos):
            return [videos]
    flat = []
    for index, item in enumerate(videos):
        if isinstance(item, list) and not all(isinstance(frame, Image.Image) for frame in item):
            if len(item) != 1:
                raise ValueError(f"Row {index} holds {len(item)} videos; SALOVA takes one video per row.")
            item = item[0]
        flat.append(item)
    return flat


def _per_video(values, video_list: list, name: str) -> list:
    """`values` as one entry per video: `None` for all, one value shared by all, or a list of one per video."""
    if values is None:
        return [None] * len(video_list)
    if not isinstance(values, (list, tuple)):
        return [values] * len(video_list)
    if len(values) != len(video_list):
        raise ValueError(f"{name} has {len(values)} entries for {len(video_list)} videos; pass one per video.")
    return list(values)


def _metadata_fps(metadata: VideoMetadata | dict | None) -> float | None:
    return metadata.get("fps") if isinstance(metadata, dict) else getattr(metadata, "fps", None)


def _is_single_image(video) -> bool:
    return isinstance(video, np.ndarray) and video.ndim == 3


def _channels_last(video, input_data_format=None):
    """A decoded video (or image) array with its channels last; other inputs unchanged."""
    if isinstance(video, torch.Tensor):
        video = video.numpy()
    if not isinstance(video, np.ndarray) or video.ndim not in (3, 4):
        return video
    channels = (1, 3, 4)
    first, last = video.shape[-3] in channels, video.shape[-1] in channels
    layout = str(getattr(input_data_format, "value", input_data_format)) if input_data_format else None
    if layout is None and first and last:
        raise ValueError(
            f"Cannot tell the channel axis of a video array of shape {video.shape}; pass "
            "input_data_format='channels_first' or 'channels_last'."
        )
    layout = layout or ("channels_first" if first else "channels_last")
    if layout == "channels_first":
        video = np.moveaxis(video, -3, -1)
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    elif video.shape[-1] == 4:
        video = video[..., :3]
    return np.ascontiguousarray(video)


__all__ = ["SalovaVideoProcessor", "SalovaVideoProcessorKwargs"]

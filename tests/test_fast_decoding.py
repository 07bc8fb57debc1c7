"""Fast detection mode and reference-frame sampling: same cuts as the exact mode, fewer frames decoded, counted."""

import math
import threading

import av
import numpy as np
import pytest
import scenedetect
from av.video.frame import PictureType
from conftest import misplace_first_frame, real_video, record_calls
from salova.processing import FrameTransform, SceneCutDetector, decode_video
from salova.processing import video_decoding as video_decoding_module
from salova.processing.scene_detection import content_score

from salova.video_writer import write_video

TRANSFORM = FrameTransform(32)


def _decode(path, mode, **kwargs):
    return decode_video(path, TRANSFORM, cut_detector=SceneCutDetector(), detection_mode=mode, **kwargs)


def _declared_frames(path) -> int:
    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def _textured_scenes(scene_lengths, fps, size=(72, 96), seed=0):
    """Scenes of smooth random texture panning sideways (frames of real motion), one texture per scene."""
    rng = np.random.default_rng(seed)
    height, width = size
    for length in scene_lengths:
        coarse = rng.integers(0, 256, (6, 16, 3), dtype=np.uint8)
        canvas = np.asarray(
            av.VideoFrame.from_ndarray(coarse, format="rgb24")
            .reformat(width=2 * width, height=height, format="rgb24", interpolation="BICUBIC")
            .to_ndarray()
        )
        for index in range(length):
            yield np.ascontiguousarray(canvas[:, index : index + width])


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"])
def test_fast_mode_finds_the_cuts_of_the_real_clips(name):
    path = real_video(name)
    exact, fast = _decode(path, "exact"), _decode(path, "fast")
    assert len(fast.cut_times) == len(exact.cut_times)
    np.testing.assert_allclose(fast.cut_times, exact.cut_times, atol=1.0 / exact.frame_rate + 1e-6)
    assert fast.duration == pytest.approx(exact.duration)
    assert len(fast.timestamps) == len(exact.timestamps)
    # The 1 FPS frames come from the nearest decoded frame: a few frames from the exact ones at most.
    assert np.abs(fast.timestamps - exact.timestamps).max() <= 3.0 / exact.frame_rate + 1e-6


def test_fast_mode_decodes_fewer_frames_on_a_clip_with_b_frames():
    path = real_video("bikes.mp4")
    fast = _decode(path, "fast")
    np.testing.assert_allclose(fast.cut_times, [1.20, 3.04, 5.48, 7.48, 9.68], atol=0.04 + 1e-6)
    assert fast.num_decoded_frames < 0.8 * _declared_frames(path) == 200


@pytest.mark.parametrize(
    "key_frames_at_cuts, anchors",
    [(True, True), (False, True), (False, False)],
    ids=["key-frames-at-cuts", "large-p-frames-at-cuts", "fixed-gop-by-seeking"],
)
def test_fast_mode_places_known_cuts_on_the_exact_frame(tmp_path, monkeypatch, key_frames_at_cuts, anchors):
    # The full windows at the cuts come from the first pass, around the key frame or the large P-frame that starts
    # each scene; without such anchors, from seeking afterwards.
    lengths, fps = [37, 52, 29, 61, 45], 24
    options = {} if key_frames_at_cuts else {"x264-params": "scenecut=0:keyint=200:bframes=3"}
    path = write_video(tmp_path / "known.mp4", _textured_scenes(lengths, fps), fps=fps, encoder_options=options)
    if not anchors:
        monkeypatch.setattr(video_decoding_module, "LARGE_REFERENCE_PACKET_RATIO", math.inf)
    seeks = []
    real_window = video_decoding_module._FileFrames.all_frames_between

    def counting_window(self, start, end):
        seeks.append((start, end))
        return real_window(self, start, end)

    monkeypatch.setattr(video_decoding_module._FileFrames, "all_frames_between", counting_window)
    fast = _decode(path, "fast")
    expected = np.cumsum(lengths)[:-1] / fps
    np.testing.assert_allclose(fast.cut_times, expected, atol=1e-6)
    np.testing.assert_allclose(_decode(path, "exact").cut_times, expected, atol=1e-6)
    sought_cuts = [cut for cut in expected if any(start <= cut <= end for start, end in seeks)]
    assert len(sought_cuts) == (0 if anchors else len(expected))
    assert fast.num_decoded_frames < sum(lengths)


class _DemuxRecorder:
    """A container whose demux records the presentation time (frames of `fps`) of each packet it reads."""

    def __init__(self, container, first_pts: int, fps: int):
        self._container, self._first_pts, self._fps = container, first_pts, fps
        self.read: list[float] = []

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, stream):
        for packet in self._container.demux(stream):
            if packet.pts is not None:
                self.read.append(float((packet.pts - self._first_pts) * stream.time_base * self._fps))
            yield packet


@pytest.mark.parametrize("first_frame, key_frame", [(51, 48), (46, 24), (3, 0)])
def test_a_window_is_decoded_from_the_key_frame_just_before_it(tmp_path, first_frame, key_frame):
    # Key frames every 24 frames: a window is decoded from the last one presented at or before its first frame.
    fps = 24
    options = {"x264-params": "scenecut=0:keyint=24:min-keyint=24:bframes=3"}
    path = write_video(tmp_path / "gop.mp4", _textured_scenes([120], fps), fps=fps, encoder_options=options)
    with video_decoding_module._FileFrames(str(path), "gop") as frames:
        for _ in frames.reference_frames():
            pass
        recorder = _DemuxRecorder(frames._container, frames._first_pts, fps)
        frames._container = recorder
        window = frames.all_frames_between(first_frame / fps, (first_frame + 4) / fps)
    assert [round(seconds * fps) for _, seconds, _ in window] == list(range(first_frame, first_frame + 5))
    assert round(min(recorder.read)) == key_frame


def test_fast_mode_on_a_concatenated_real_video_agrees_with_the_exact_mode(concatenated_real_video):
    exact, fast = _decode(concatenated_real_video, "exact"), _decode(concatenated_real_video, "fast")
    assert len(exact.cut_times) >= 12
    np.testing.assert_allclose(fast.cut_times, exact.cut_times, atol=1.0 / 25 + 1e-6)


def test_content_score_is_pyscenedetects_to_the_bit():
    detector = scenedetect.ContentDetector()
    ours = SceneCutDetector()
    with av.open(str(real_video("bikes.mp4"))) as container:
        frames = [frame for _, frame in zip(range(40), container.decode(video=0), strict=False)]
    previous = None
    for index, frame in enumerate(frames):
        bgr = ours._downscaled_bgr(frame)
        hsv = ours.detection_image(frame)
        reference = detector._calculate_frame_score(scenedetect.FrameTimecode(index, fps=25.0), bgr)
        assert content_score(previous, hsv) == reference
        previous = hsv


def test_reference_frame_sampling_decodes_fewer_frames_than_the_file_holds(monkeypatch):
    path = real_video("bikes.mp4")
    decoded_frames = []
    real_timed = video_decoding_module._FileFrames._timed

    def counting_timed(self, frame):
        decoded_frames.append(frame.pts)
        return real_timed(self, frame)

    monkeypatch.setattr(video_decoding_module._FileFrames, "_timed", counting_timed)
    sampled = decode_video(path, TRANSFORM, sample_reference_frames_only=True)
    assert len(decoded_frames) == sampled.num_decoded_frames < 0.6 * _declared_frames(path)
    exact = decode_video(path, TRANSFORM)
    assert len(sampled.timestamps) == len(exact.timestamps) == 10
    assert np.abs(sampled.timestamps - exact.timestamps).max() <= 3.0 / 25 + 1e-6
    assert sampled.duration == pytest.approx(exact.duration) and sampled.cut_times == []


def test_reference_frame_sampling_of_a_clip_without_b_frames_keeps_the_exact_frames():
    path = real_video("bigbuckbunny.mp4")
    sampled = decode_video(path, TRANSFORM, sample_reference_frames_only=True)
    exact = decode_video(path, TRANSFORM)
    np.testing.assert_array_equal(sampled.timestamps, exact.timestamps)
    np.testing.assert_array_equal(sampled.frames, exact.frames)


def test_in_memory_frames_are_decoded_exactly_in_fast_mode():
    frames = np.zeros((40, 16, 16, 3), np.uint8)
    frames[20:] = 200
    assert _decode(frames, "fast", video_fps=10).cut_times == pytest.approx([2.0])


def test_bad_mode_arguments():
    path = real_video("carphone_pristine.mp4")
    with pytest.raises(ValueError, match=r"detection_mode must be one of \('exact', 'fast'\), got 'quick'"):
        _decode(path, "quick")
    with pytest.raises(ValueError, match="sample_reference_frames_only=True .* cut_detector=None"):
        decode_video(path, TRANSFORM, cut_detector=SceneCutDetector(), sample_reference_frames_only=True)


def test_processor_setting_selects_the_fast_paths(tiny, monkeypatch):
    """`scene_detection="fast"` reaches the decoder: same segments from fewer decoded frames, and fixed windows
    decode only the reference frames."""
    video_processor = tiny[1].video_processor
    decoded_counts = []
    decode = video_decoding_module.decode_video

    def counting_decode(*args, **kwargs):
        decoded = decode(*args, **kwargs)
        decoded_counts.append(decoded.num_decoded_frames)
        return decoded

    monkeypatch.setattr("salova.processing.video_processing_salova.decode_video", counting_decode)
    path = real_video("bikes.mp4")
    exact = video_processor(str(path))
    fast = video_processor(str(path), scene_detection="fast")
    windows = video_processor(str(path), segmenter="fixed_windows", window_seconds=4, scene_detection="fast")
    assert fast["frames_per_segment"].tolist() == exact["frames_per_segment"].tolist()
    np.testing.assert_allclose(fast["segment_times"], exact["segment_times"], atol=0.04 + 1e-6)
    assert decoded_counts[0] == _declared_frames(path)
    assert decoded_counts[1] < decoded_counts[0] and decoded_counts[2] < decoded_counts[0]
    assert windows["segments_per_video"].tolist() == [3]


def _frame_types(path) -> list[str]:
    with av.open(str(path)) as container:
        return [PictureType(frame.pict_type).name for frame in container.decode(video=0)]


def _full_decode_at(path, times) -> np.ndarray:
    """The frames a full decode gives at `times` (seconds from the first frame), resized like the decoder's."""
    wanted, kept = {round(time, 6) for time in times}, {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if round(frame.time, 6) in wanted:
                kept[round(frame.time, 6)] = TRANSFORM(frame)
    return np.stack([kept[round(time, 6)] for time in times])


@pytest.mark.parametrize(("references", "skips_b_frames"), [(1, True), (3, False)], ids=["x264-ref-1", "x264-ref-3"])
def test_b_frames_are_all_skipped_only_where_no_p_frame_references_one(tmp_path, references, skips_b_frames):
    # A B-pyramid either way: with ref=3 x264 predicts P-frames from its reference B-frames too.
    options = {"x264-params": f"ref={references}:bframes=3:b-pyramid=normal:scenecut=0:keyint=250"}
    path = write_video(tmp_path / "pyramid.mp4", _textured_scenes([150], 24), fps=24, encoder_options=options)
    types = _frame_types(path)
    assert types.count("B") >= 60
    with av.open(str(path)) as container:
        container.streams.video[0].codec_context.skip_frame = "NONREF"
        reference_frames = sum(1 for _ in container.decode(video=0))
    assert reference_frames > len(types) - types.count("B")  # the pyramid's reference B-frames
    sampled = decode_video(path, TRANSFORM, sample_reference_frames_only=True)
    # Whatever was skipped, each kept frame is the very frame a full decode gives at its time.
    np.testing.assert_array_equal(sampled.frames, _full_decode_at(path, sampled.timestamps))
    expected = len(types) - types.count("B") if skips_b_frames else reference_frames
    assert sampled.num_decoded_frames == expected
    exact = decode_video(path, TRANSFORM)
    assert np.abs(sampled.timestamps - exact.timestamps).max() <= 3.0 / 24 + 1e-6


def test_fast_mode_skipping_all_b_frames_places_cuts_without_key_frames_there(tmp_path):
    lengths, fps = [37, 52, 29, 61, 45], 24
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:scenecut=0:keyint=200"}
    path = write_video(tmp_path / "known.mp4", _textured_scenes(lengths, fps), fps=fps, encoder_options=options)
    fast = _decode(path, "fast")
    np.testing.assert_allclose(fast.cut_times, np.cumsum(lengths)[:-1] / fps, atol=1e-6)
    np.testing.assert_array_equal(fast.frames, _full_decode_at(path, fast.timestamps))


def test_streams_that_do_not_say_how_p_frames_predict_keep_their_reference_b_frames(tmp_path):
    # No x264 options in the stream (another encoder): B-frames that are references must be decoded.
    path = real_video("bigbuckbunny.mp4")
    with video_decoding_module._FileFrames(str(path), "bigbuckbunny") as frames:
        first_packet = next(frames._container.demux(frames._stream))
        assert frames.b_frame_structure(first_packet) == (True, video_decoding_module.MAX_NON_REFERENCE_RUN)
    mpeg4 = tmp_path / "mpeg4.mp4"
    with av.open(str(mpeg4), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 72, "yuv420p"
        for pixels in _textured_scenes([30], 24):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    with video_decoding_module._FileFrames(str(mpeg4), "mpeg4") as frames:
        first_packet = next(frames._container.demux(frames._stream))
        assert frames.b_frame_structure(first_packet)[0] is True


def test_reference_sampling_in_parts_side_by_side_keeps_the_frames_of_one_pass(tmp_path, monkeypatch):
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    path = write_video(tmp_path / "long.mp4", _textured_scenes([130, 110, 120], 24), fps=24, encoder_options=options)
    monkeypatch.setattr(video_decoding_module, "usable_cores", lambda: 4)
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", 3.0)
    parts = record_calls(monkeypatch, video_decoding_module, "_sparse_part")
    in_parts = decode_video(path, TRANSFORM, sample_reference_frames_only=True)
    assert len(parts) == 4  # 15 s: parts of at least 3 s, one per core (4), cut at key frames
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", float("inf"))
    one_pass = decode_video(path, TRANSFORM, sample_reference_frames_only=True)
    assert len(parts) == 5 and parts[-1][1:3] == (None, None)  # the whole file as one part
    np.testing.assert_array_equal(in_parts.timestamps, one_pass.timestamps)
    np.testing.assert_array_equal(in_parts.frames, one_pass.frames)
    assert in_parts.duration == one_pass.duration
    # Each part after the first decodes the key frame the previous one ended on once more, and nothing else more
    # (a part's one-thread decoder returns frames sooner, which can let it skip a packet that one pass decodes).
    assert one_pass.num_decoded_frames - 3 <= in_parts.num_decoded_frames <= one_pass.num_decoded_frames + 3
    with open(path, "rb") as file:  # a file object cannot be reopened: one pass
        assert decode_video(file, TRANSFORM, sample_reference_frames_only=True).num_decoded_frames == (
            one_pass.num_decoded_frames
        )
    assert len(parts) == 6 and parts[-1][1:3] == (None, None)


@pytest.mark.parametrize("misaligned", ["part-start-no-packet-has", "first-frame-not-the-first-packet"])
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_part_off_its_key_frame_falls_back_to_one_pass(tmp_path, monkeypatch, mode, misaligned):
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    path = write_video(tmp_path / "long.mp4", _textured_scenes([130, 110, 120], 24), fps=24, encoder_options=options)
    monkeypatch.setattr(video_decoding_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", 3.0)

    def decode():
        if mode == "fast":
            return _decode(path, "fast")
        return decode_video(path, TRANSFORM, sample_reference_frames_only=True)

    with video_decoding_module._FileFrames(str(path), "long") as frames:
        (key,) = frames.parallel_part_starts(1.0)
    in_parts = decode()
    parts = record_calls(monkeypatch, video_decoding_module, "_sparse_part")
    if misaligned == "part-start-no-packet-has":
        # The first part never reaches it, the second never starts.
        key += 1
        monkeypatch.setattr(video_decoding_module._FileFrames, "parallel_part_starts", lambda self, fps: [key])
    else:
        misplace_first_frame(monkeypatch)
    fallback = decode()
    bounds = [call[1:3] for call in parts]
    # The two parts run side by side, in either order; the one pass comes after both, its times counted from the
    # first frame decoded.
    assert set(bounds[:2]) == {(None, key), (key, None)} and bounds[2:] == [(None, None)]
    np.testing.assert_array_equal(fallback.timestamps, in_parts.timestamps)
    np.testing.assert_array_equal(fallback.frames, in_parts.frames)
    assert fallback.cut_times == in_parts.cut_times and fallback.duration == in_parts.duration


def test_streams_whose_b_frames_cannot_all_be_skipped_are_sampled_in_one_pass(tmp_path, monkeypatch):
    options = {"x264-params": "ref=3:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    path = write_video(tmp_path / "long.mp4", _textured_scenes([90, 90, 90], 24), fps=24, encoder_options=options)
    monkeypatch.setattr(video_decoding_module, "usable_cores", lambda: 4)
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", 2.0)
    with video_decoding_module._FileFrames(str(path), "long") as frames:
        assert frames.parallel_part_starts(1.0) == []
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    path = write_video(tmp_path / "fast.mp4", _textured_scenes([90, 90, 90], 24), fps=24, encoder_options=options)
    with video_decoding_module._FileFrames(str(path), "fast") as frames:
        assert len(frames.parallel_part_starts(1.0)) == 3
        # Sampling so dense that one frame could be the nearest on both sides of a key frame: one pass.
        assert frames.parallel_part_starts(4.0) == []


@pytest.mark.parametrize(
    "key_frames_at_cuts, anchors",
    [(True, True), (False, True), (False, False)],
    ids=["key-frames-at-cuts", "large-p-frames-at-cuts", "fixed-gop-windows-side-by-side"],
)
def test_fast_mode_in_parts_side_by_side_finds_the_cuts_of_one_pass(tmp_path, monkeypatch, key_frames_at_cuts, anchors):
    lengths, fps = [37, 52, 29, 61, 45, 70, 40], 24
    scenecut = "" if key_frames_at_cuts else ":scenecut=0"
    options = {"x264-params": f"ref=1:bframes=3:b-pyramid=normal:keyint=30{scenecut}"}
    path = write_video(tmp_path / "known.mp4", _textured_scenes(lengths, fps), fps=fps, encoder_options=options)
    monkeypatch.setattr(video_decoding_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", 3.0)
    if not anchors:
        monkeypatch.setattr(video_decoding_module, "LARGE_REFERENCE_PACKET_RATIO", math.inf)
    window_threads = []
    real_window = video_decoding_module._FileFrames.all_frames_between

    def recorded_window(self, start, end):
        window_threads.append(threading.current_thread().name)
        return real_window(self, start, end)

    monkeypatch.setattr(video_decoding_module._FileFrames, "all_frames_between", recorded_window)
    with video_decoding_module._FileFrames(str(path), "known") as frames:
        assert len(frames.parallel_part_starts(1.0)) == 1  # one part per core
    searches = []
    real_joined = video_decoding_module.SparseCutSearch.joined.__func__

    def recorded_joined(cls, parts):
        searches.append(real_joined(cls, parts))
        return searches[-1]

    monkeypatch.setattr(video_decoding_module.SparseCutSearch, "joined", classmethod(recorded_joined))
    in_parts = _decode(path, "fast")
    np.testing.assert_allclose(in_parts.cut_times, np.cumsum(lengths)[:-1] / fps, atol=1e-6)
    if not anchors:  # every cut's window decoded afterwards, by one decoder per core
        assert len(window_threads) >= len(lengths) - 1
        assert len({name for name in window_threads if name.startswith("decode-window")}) == 2
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", float("inf"))
    window_threads.clear()
    one_pass = _decode(path, "fast")
    assert not any(name.startswith("decode-window") for name in window_threads)
    # The same scores of the same frames, and the same full-decode images kept around key frames.
    assert searches[0]._times == searches[1]._times and searches[0]._scores == searches[1]._scores
    assert [stamp.seconds for stamp, _ in searches[0]._kept] == [stamp.seconds for stamp, _ in searches[1]._kept]
    assert in_parts.cut_times == one_pass.cut_times
    np.testing.assert_array_equal(in_parts.timestamps, one_pass.timestamps)
    np.testing.assert_array_equal(in_parts.frames, one_pass.frames)
    assert in_parts.duration == one_pass.duration


def _cut_without_re_encoding(source, target, frames: int):
    """`source` from its `frames`-th frame on, its packets copied as a cut without re-encoding copies them: from the
    key frame before the cut, with an edit list (written for the negative timestamps) that starts the stream at it."""
    with av.open(str(source)) as whole, av.open(str(target), "w") as cut:
        stream = whole.streams.video[0]
        copy = cut.add_stream_from_template(stream)
        shift = round(frames / stream.average_rate / stream.time_base)
        for packet in whole.demux(stream):
            if packet.dts is None:
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, copy
            cut.mux(packet)
    return target


def test_a_file_cut_without_re_encoding_keeps_its_times_and_frames(tmp_path, monkeypatch):
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    whole = write_video(tmp_path / "whole.mp4", _textured_scenes([130, 110, 120], 24), fps=24, encoder_options=options)
    path = _cut_without_re_encoding(whole, tmp_path / "cut.mp4", frames=5)
    with av.open(str(path)) as container, av.open(str(path)) as packets:
        stream = container.streams.video[0]
        first_packet = next(packets.demux(video=0))
        first_frame = next(container.decode(stream))
        # The cut's key frame is not shown, and the first frame shown is a B-frame, which the fast mode skips.
        assert first_packet.is_discard and first_packet.pts < stream.start_time == first_frame.pts
        assert first_frame.pict_type == PictureType.B and stream.frames == 360
    monkeypatch.setattr(video_decoding_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(video_decoding_module, "MIN_EXACT_PART_SECONDS", 3.0)
    monkeypatch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", 3.0)
    one_passes = record_calls(monkeypatch, video_decoding_module, "_decode_pass")
    sparse_parts = record_calls(monkeypatch, video_decoding_module, "_sparse_part")
    exact = _decode(path, "exact")  # not taken for a truncated file: the stream shows 355 of its 360 frames
    fast = _decode(path, "fast")
    assert exact.num_decoded_frames == 355 and not one_passes  # in parts, none of which fell back to one pass
    assert len(sparse_parts) == 2 and (None, None) not in [call[1:3] for call in sparse_parts]
    np.testing.assert_allclose(exact.cut_times, [125 / 24, 235 / 24], atol=1e-6)
    # Times count from the first frame shown in both modes, though the fast mode never decodes it.
    assert fast.cut_times == exact.cut_times and fast.duration == exact.duration == 355 / 24
    with monkeypatch.context() as patch:
        patch.setattr(video_decoding_module, "MIN_EXACT_PART_SECONDS", math.inf)
        patch.setattr(video_decoding_module, "MIN_PARALLEL_PART_SECONDS", math.inf)
        one_pass, fast_one_pass = _decode(path, "exact"), _decode(path, "fast")
    np.testing.assert_array_equal(exact.frames, one_pass.frames)
    np.testing.assert_array_equal(exact.timestamps, one_pass.timestamps)
    assert fast_one_pass.cut_times == exact.cut_times and fast_one_pass.duration == exact.duration
    np.testing.assert_array_equal(fast_one_pass.timestamps, fast.timestamps)

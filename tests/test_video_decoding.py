"""One-pass decoding: cuts agree with PySceneDetect, 1 FPS sampling, rotation, VFR, odd sizes, inputs, bad input."""

import io
import math
import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import scenedetect
from av.video.frame import PictureType
from conftest import colour_scenes, misplace_first_frame, real_video, record_calls
from PIL import Image
from salova.processing import FrameTransform, SceneCutDetector, decode_parts, decode_video, video_decoding
from salova.processing.decode_parts import PartPlan, plan_parts
from salova.processing.video_frames import FileFrames
from salova.training.data_check import probe_video

from salova.video_writer import write_video

TRANSFORM = FrameTransform(32)


def _reference_cuts(path: Path) -> list[float]:
    scenes = scenedetect.detect(str(path), scenedetect.AdaptiveDetector(), backend="pyav")
    return [start.seconds for start, _ in scenes[1:]]


def _decode(path, **kwargs):
    return decode_video(path, TRANSFORM, cut_detector=SceneCutDetector(), **kwargs)


@pytest.mark.parametrize(
    ("name", "expected_cuts"),
    [("bikes.mp4", 5), ("bigbuckbunny.mp4", 0), ("carphone_pristine.mp4", 0)],
)
def test_cuts_match_pyscenedetect_on_real_clips(name, expected_cuts):
    path = real_video(name)
    reference = _reference_cuts(path)
    decoded = _decode(path)
    assert len(reference) == expected_cuts
    assert len(decoded.cut_times) == len(reference)
    one_frame = 1.0 / decoded.frame_rate
    np.testing.assert_allclose(decoded.cut_times, reference, atol=one_frame + 1e-6)


def test_cuts_match_pyscenedetect_on_a_concatenated_real_video(concatenated_real_video):
    reference = _reference_cuts(concatenated_real_video)
    decoded = _decode(concatenated_real_video)
    # bikes' 5 cuts twice, plus the joins between clips.
    assert len(reference) >= 12
    assert len(decoded.cut_times) == len(reference)
    np.testing.assert_allclose(decoded.cut_times, reference, atol=1.0 / 25 + 1e-6)


def test_bikes_has_six_scenes_at_the_documented_times():
    decoded = _decode(real_video("bikes.mp4"))
    np.testing.assert_allclose(decoded.cut_times, [1.20, 3.04, 5.48, 7.48, 9.68], atol=0.04 + 1e-6)
    assert decoded.num_decoded_frames == 250
    np.testing.assert_allclose(decoded.timestamps, np.arange(10.0))
    assert decoded.duration == pytest.approx(10.0)


@pytest.mark.parametrize("in_parts", [False, True], ids=["one-pass", "parts-side-by-side"])
def test_every_frame_is_decoded_and_judged_once_in_order(monkeypatch, in_parts):
    opened, judged, threads = [], [], set()
    real_open = av.open

    def counting_open(*args, **kwargs):
        container = real_open(*args, **kwargs)
        opened.append(container)
        return container

    real_score = SceneCutDetector.score
    real_process_score = SceneCutDetector.process_score

    def recorded_score(self, frame):
        threads.add(threading.current_thread().name)
        return real_score(self, frame)

    def recorded_process_score(self, stamp, score):
        judged.append(stamp)
        return real_process_score(self, stamp, score)

    monkeypatch.setattr(decode_parts, "usable_cores", lambda: 2)
    if not in_parts:
        monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", math.inf)
    monkeypatch.setattr(av, "open", counting_open)
    monkeypatch.setattr(SceneCutDetector, "score", recorded_score)
    monkeypatch.setattr(SceneCutDetector, "process_score", recorded_process_score)
    decoded = _decode(real_video("bikes.mp4"))
    # One container, or one to find the key frame to cut at and one per part (bikes: 10 s, two cores).
    assert len(opened) == (4 if in_parts else 1)
    assert {name.split("_")[0] for name in threads} == ({"decode-part"} if in_parts else {"scene-detection"})
    assert [stamp.index for stamp in judged] == list(range(250)) == list(range(decoded.num_decoded_frames))
    assert [stamp.seconds for stamp in judged] == pytest.approx(np.arange(250) / 25)


def test_scene_colours_are_detected_and_sampled_at_one_fps(scene_video):
    decoded = _decode(scene_video)
    np.testing.assert_allclose(decoded.cut_times, [3.0, 6.0, 9.0, 12.0], atol=0.1 + 1e-6)
    np.testing.assert_allclose(decoded.timestamps, np.arange(15.0))
    assert decoded.frames.shape == (15, 32, 32, 3) and decoded.frames.dtype == np.uint8
    # Frame 7 (t = 7 s) lies in the third scene, blue.
    assert decoded.frames[7, 0, 0, 2] > 180 > decoded.frames[7, 0, 0, 0]


def test_variable_frame_rate_samples_first_frame_of_each_second(tmp_path):
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.05, 2.6, 2.7, 3.4, 5.2]
    frames = (np.full((32, 48, 3), 20 * index, np.uint8) for index in range(len(times)))
    path = write_video(tmp_path / "vfr.mp4", frames, fps=10, frame_times=times)
    decoded = decode_video(path, TRANSFORM)
    np.testing.assert_allclose(decoded.timestamps, [0.0, 1.0, 2.6, 3.4, 5.2], atol=1e-3)
    assert decoded.num_decoded_frames == len(times)


def test_display_rotation_is_applied(tmp_path):
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :16] = 255  # a white band on the left of the stored frame
    plain = decode_video(write_video(tmp_path / "plain.mp4", [frame] * 3, fps=3), TRANSFORM).frames[0]
    rotated = decode_video(write_video(tmp_path / "rotated.mp4", [frame] * 3, fps=3, rotation=90), TRANSFORM)
    assert plain[:, :4].mean() > 200 and plain[:, -4:].mean() < 60
    # Rotated 90 degrees counter-clockwise for display, the left band becomes the bottom rows.
    assert rotated.frames[0][-4:].mean() > 200 and rotated.frames[0][:4].mean() < 60


def test_shortest_edge_crop_keeps_the_centre_of_the_displayed_frame(tmp_path):
    frame = np.zeros((32, 96, 3), np.uint8)
    frame[:, 40:56] = 255  # a white band in the middle third
    decoded = decode_video(
        write_video(tmp_path / "wide.mp4", [frame] * 2, fps=2), FrameTransform(32, "shortest_edge_crop")
    )
    centre = decoded.frames[0]
    assert centre.shape == (32, 32, 3)
    assert centre[:, 12:20].mean() > 200 and centre[:, :4].mean() < 60 and centre[:, -4:].mean() < 60


def test_odd_sizes_decode_and_detect(tmp_path):
    frames = colour_scenes([(200, 30, 30), (30, 30, 200)], 2.0, fps=10, size=(17, 33))
    path = write_video(tmp_path / "odd.mp4", frames, fps=10)
    decoded = _decode(path)
    assert decoded.frames.shape == (4, 32, 32, 3)
    assert decoded.cut_times == pytest.approx([2.0], abs=0.1 + 1e-6)


def test_file_object_and_path_give_the_same_result(scene_video):
    from_path = _decode(scene_video)
    with open(scene_video, "rb") as handle:
        from_handle = _decode(io.BytesIO(handle.read()))
    np.testing.assert_array_equal(from_path.frames, from_handle.frames)
    assert from_path.cut_times == from_handle.cut_times


def test_frames_in_memory_as_array_or_pil_images():
    frames = np.stack(list(colour_scenes([(200, 30, 30), (30, 30, 200)], 2.0, fps=10)))
    from_array = _decode(frames, video_fps=10)
    from_images = _decode([Image.fromarray(frame) for frame in frames], video_fps=10)
    np.testing.assert_array_equal(from_array.frames, from_images.frames)
    np.testing.assert_allclose(from_array.timestamps, [0.0, 1.0, 2.0, 3.0])
    assert from_array.cut_times == pytest.approx([2.0], abs=0.1 + 1e-6) == from_images.cut_times
    with pytest.raises(ValueError, match="video_fps"):
        _decode(frames)


def test_decoding_is_deterministic_while_detection_runs_alongside():
    # Detection (its own thread) and the 1 FPS resize scale the same frames: they must not share a scaler.
    frames = np.stack(list(colour_scenes([(200, 30, 30), (30, 30, 200)], 4.0, fps=10)))
    first = _decode(frames, video_fps=10).frames
    for _ in range(5):
        np.testing.assert_array_equal(_decode(frames, video_fps=10).frames, first)


SCENE_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 220, 40), (150, 50, 200), (20, 20, 20)]


def _one_pass(path, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(decode_parts, "MIN_PART_SECONDS", math.inf)
        return _decode(path, **kwargs)


def _assert_same_result(decoded, reference):
    assert decoded.cut_times == reference.cut_times
    np.testing.assert_array_equal(decoded.timestamps, reference.timestamps)
    np.testing.assert_array_equal(decoded.frames, reference.frames)
    assert decoded.num_decoded_frames == reference.num_decoded_frames
    assert decoded.duration == reference.duration


def _scenes_in_parts(tmp_path, monkeypatch, x264_params: str, cores: int) -> Path:
    """15 s of colour scenes of 2.5 s at 24 FPS, encoded with `x264_params`; parts of 3 s or more on `cores`."""
    path = write_video(
        tmp_path / "scenes.mp4",
        colour_scenes(SCENE_COLOURS, 2.5, fps=24),
        fps=24,
        encoder_options={"x264-params": x264_params},
    )
    monkeypatch.setattr(decode_parts, "usable_cores", lambda: cores)
    monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", 3.0)
    return path


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.4])
def test_parts_side_by_side_give_the_result_of_one_pass(tmp_path, monkeypatch, fps):
    # Key frames at the scene cuts and every second, B-frames in a pyramid: parts cut at key frames in a scene and
    # at cuts, so that a part's first score and first sampled frame depend on the part before.
    path = _scenes_in_parts(tmp_path, monkeypatch, "bframes=3:b-pyramid=normal:keyint=24", cores=4)
    parts = record_calls(monkeypatch, FileFrames, "reopened")
    decoded = decode_video(path, TRANSFORM, fps, cut_detector=SceneCutDetector())
    assert len(parts) == 4  # 15 s: parts of at least 3 s, one per core
    np.testing.assert_allclose(decoded.cut_times, np.arange(1, 6) * 2.5, atol=1e-6)
    _assert_same_result(decoded, _one_pass(path, monkeypatch, fps=fps))
    assert len(parts) == 4


def test_parts_share_the_cores_out_between_their_decoders(tmp_path, monkeypatch):
    path = _scenes_in_parts(tmp_path, monkeypatch, "bframes=3:keyint=24", cores=16)
    reopened = record_calls(monkeypatch, FileFrames, "reopened")
    decoded = _decode(path)
    assert [args[1:] for args in reopened] == [(3,)] * 5  # 15 s: 5 parts of 3 s or more, 16 cores // 5 each
    _assert_same_result(decoded, _one_pass(path, monkeypatch))


def test_open_gop_key_frames_are_not_cut_at(tmp_path, monkeypatch):
    # Open groups of pictures: the B-frames after each key frame (bar the first) reference the group before it.
    path = _scenes_in_parts(tmp_path, monkeypatch, "open-gop=1:bframes=3:b-pyramid=normal:keyint=24:scenecut=0", 4)
    with av.open(str(path)) as container:
        packets = [(packet.pts, packet.is_keyframe) for packet in container.demux() if packet.size]
    leading = [
        key for index, (key, is_key) in enumerate(packets) if is_key and any(pts < key for pts, _ in packets[index:])
    ]
    assert len(leading) >= 10
    with FileFrames(str(path), "open") as frames:
        assert plan_parts(frames) is None
    _assert_same_result(_decode(path), _one_pass(path, monkeypatch))


@pytest.mark.parametrize("misaligned", ["part-start-no-packet-has", "first-frame-not-the-first-packet"])
def test_a_part_off_its_key_frame_falls_back_to_one_pass(tmp_path, monkeypatch, misaligned):
    path = _scenes_in_parts(tmp_path, monkeypatch, "bframes=3:keyint=24", cores=2)
    with FileFrames(str(path), "scenes") as frames:
        plan = plan_parts(frames)
    (key,) = plan.starts
    reference = _one_pass(path, monkeypatch)
    one_passes = record_calls(monkeypatch, video_decoding, "decode_in_one_pass")
    if misaligned == "part-start-no-packet-has":
        # The first part never reaches it, the second never starts.
        monkeypatch.setattr(video_decoding, "plan_parts", lambda frames: PartPlan([key + 1], plan.origin))
    else:
        misplace_first_frame(monkeypatch)
    # The very result of one pass: its times count from the first frame decoded, not from the parts' first packet.
    _assert_same_result(_decode(path), reference)
    assert len(one_passes) == 1


def test_an_image_is_a_one_frame_video():
    image = Image.fromarray(np.full((40, 70, 3), 128, np.uint8))
    decoded = _decode(image)
    assert decoded.is_image and decoded.frames.shape == (1, 32, 32, 3) and decoded.cut_times == []
    np.testing.assert_array_equal(decoded.frames, _decode(np.asarray(image)).frames)


def test_one_frame_video(tmp_path):
    path = write_video(tmp_path / "one.mp4", [np.full((32, 32, 3), 90, np.uint8)], fps=25)
    decoded = _decode(path)
    assert decoded.num_decoded_frames == 1 and decoded.frames.shape[0] == 1 and decoded.cut_times == []


def test_large_resolution_decodes_to_the_tower_size(tmp_path):
    frames = [np.full((2160, 3840, 3), value, np.uint8) for value in (10, 200)]
    decoded = _decode(write_video(tmp_path / "uhd.mp4", frames, fps=2))
    assert decoded.frames.shape == (1, 32, 32, 3)


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        _decode(tmp_path / "nowhere.mp4")


@pytest.mark.parametrize("url", ["https://example.com/clip.mp4", "http://example.com/clip.mp4", "rtsp://camera/live"])
def test_a_url_is_reported_as_unsupported(url):
    with pytest.raises(ValueError, match=r"URLs are not supported; download the video"):
        _decode(url)


def test_a_directory_is_reported_as_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path.name} is a directory, not a video file"):
        _decode(tmp_path)


def test_a_file_object_decodes_again_from_its_start(scene_video):
    handle = io.BytesIO(scene_video.read_bytes())
    first, second = _decode(handle), _decode(handle)
    np.testing.assert_array_equal(first.frames, second.frames)
    assert first.cut_times == second.cut_times and len(second.timestamps) == 15


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not video bytes\n" * 50)
    with pytest.raises(ValueError, match=r"notes\.mp4: not a readable video"):
        _decode(path)


def test_truncated_mp4_without_index(tmp_path, scene_video):
    data = scene_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.mp4: not a readable video"):
        _decode(path)


def test_truncated_mp4_with_index_first(tmp_path):
    noise = (np.random.default_rng(index).integers(0, 255, (48, 64, 3), dtype=np.uint8) for index in range(40))
    source = tmp_path / "faststart.mp4"
    with av.open(str(source), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for pixels in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    data = source.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.mp4: decoding (failed|stopped) after \d+ .* truncated or corrupt"):
        _decode(path)


def test_corrupt_bytes_in_the_middle(tmp_path, scene_video):
    data = bytearray(scene_video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes(3000)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    try:
        decoded = _decode(path)
    except ValueError as error:
        assert "corrupt.mp4" in str(error)
    else:  # the decoder concealed the damage: the result must still be complete
        assert len(decoded.timestamps) == 15


def test_audio_only_file(tmp_path):
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ValueError, match=r"speech\.m4a: has no video stream \(streams found: audio\)"):
        _decode(path)


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_zero_frame_video(tmp_path, suffix):
    path = tmp_path / f"empty.{suffix}"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(
        ValueError, match=rf"empty\.{suffix}: (has no video stream|not a readable|.*no decodable frame)"
    ):
        _decode(path)


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, scene_video):
    with pytest.raises(ValueError, match=r"scenes\.mp4: frames are 64x48 = 3072 pixels, over max_frame_pixels=1000"):
        _decode(scene_video, max_frame_pixels=1000)


def test_bad_in_memory_frames():
    with pytest.raises(ValueError, match=r"frames must be \(H, W, 3\) uint8"):
        _decode(np.zeros((4, 8, 8), np.float32), video_fps=1)
    with pytest.raises(ValueError, match="holds no frame"):
        _decode([], video_fps=1)


@pytest.mark.parametrize("cores", [1, 2])
def test_parts_follow_the_cores_the_process_may_run_on(monkeypatch, scene_video, cores):
    # A container or `taskset` narrows the process's affinity below the machine's core count.
    monkeypatch.setattr(decode_parts.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(decode_parts.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", 3.0)
    assert decode_parts.usable_cores() == cores
    with FileFrames(str(scene_video), "scenes") as frames:
        plan = plan_parts(frames)
    assert (len(plan.starts) if plan else 0) == cores - 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this system has no CPU affinity to narrow")
def test_usable_cores_reads_the_affinity_the_system_sets():
    kept = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(kept)})
        assert decode_parts.usable_cores() == 1
    finally:
        os.sched_setaffinity(0, kept)
    assert decode_parts.usable_cores() == len(kept)


@pytest.mark.parametrize("in_parts", [False, True], ids=["one-pass", "parts-side-by-side"])
def test_a_detector_error_surfaces_without_hanging_the_decoder(monkeypatch, scene_video, in_parts):
    def broken(self, frame):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(decode_parts, "usable_cores", lambda: 2)
    monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", 3.0 if in_parts else math.inf)
    with FileFrames(str(scene_video), "scenes") as frames:
        assert (plan_parts(frames) is not None) == in_parts
    monkeypatch.setattr(SceneCutDetector, "score", broken)
    with pytest.raises(RuntimeError, match="detector exploded"):
        _decode(scene_video)


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


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """A file cut without re-encoding 5 frames into a B-pyramid video (24 FPS, 15 s, key frames every 30 frames)."""
    folder = tmp_path_factory.mktemp("cut")
    options = {"x264-params": "ref=1:bframes=3:b-pyramid=normal:keyint=30:scenecut=0"}
    whole = write_video(folder / "whole.mp4", _textured_scenes([130, 110, 120], 24), fps=24, encoder_options=options)
    return _cut_without_re_encoding(whole, folder / "cut.mp4", frames=5)


def test_a_file_cut_without_re_encoding_keeps_its_times_and_frames(cut_video, monkeypatch):
    with av.open(str(cut_video)) as container, av.open(str(cut_video)) as packets:
        stream = container.streams.video[0]
        first_packet = next(packets.demux(video=0))
        first_frame = next(container.decode(stream))
        # The cut's key frame is not shown, and the first frame shown is a B-frame.
        assert first_packet.is_discard and first_packet.pts < stream.start_time == first_frame.pts
        assert first_frame.pict_type == PictureType.B and stream.frames == 360
    monkeypatch.setattr(decode_parts, "usable_cores", lambda: 2)
    monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", 3.0)
    one_passes = record_calls(monkeypatch, video_decoding, "decode_in_one_pass")
    in_parts = _decode(cut_video)  # not taken for a truncated file: the stream shows 355 of its 360 frames
    assert in_parts.num_decoded_frames == 355 and not one_passes  # in parts, none of which fell back to one pass
    np.testing.assert_allclose(in_parts.cut_times, [125 / 24, 235 / 24], atol=1e-6)
    assert in_parts.duration == 355 / 24
    _assert_same_result(in_parts, _one_pass(cut_video, monkeypatch))


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_the_data_checks_probe_predicts_the_decoders_frames(cut_video, fps):
    # Times from the first frame shown, of a file cut without re-encoding too, whose first packets are never shown.
    for path in (real_video("bikes.mp4"), cut_video):
        probe = probe_video(str(path), fps)
        decoded = decode_video(path, TRANSFORM, fps)
        assert probe["error"] is None
        assert probe["timestamps"] == decoded.timestamps.tolist()
        assert probe["duration"] == decoded.duration and probe["num_frames"] == decoded.num_decoded_frames


@pytest.mark.parametrize("in_parts", [False, True], ids=["one-pass", "parts-side-by-side"])
def test_thumbnails_from_the_decode_pass_are_the_seeking_pass_frames(tmp_path, monkeypatch, in_parts):
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, :24] = 255
    rotated = write_video(tmp_path / "rotated.mp4", [frame] * 30, fps=10, rotation=90)
    monkeypatch.setattr(decode_parts, "usable_cores", lambda: 2)
    monkeypatch.setattr(decode_parts, "MIN_PART_SECONDS", 3.0 if in_parts else math.inf)
    for path, shape in ((real_video("bikes.mp4"), (10, 120, 282, 3)), (rotated, (3, 120, 60, 3))):
        decoded = decode_video(path, TRANSFORM, thumbnail_height=120)
        assert decoded.thumbnails.shape == shape and decoded.thumbnails.dtype == np.uint8
        # The frames the index's seeking pass takes at the sampled times, pixel for pixel.
        np.testing.assert_array_equal(decoded.thumbnails, _thumbnails_by_seeking(path, decoded.timestamps.tolist()))
    assert decode_video(rotated, TRANSFORM).thumbnails is None
    # Rotated 90 degrees counter-clockwise for display, the left band becomes the bottom rows.
    assert decoded.thumbnails[0][-10:].mean() > 200 and decoded.thumbnails[0][:10].mean() < 60


def _even(pixels: float) -> int:
    return max(2, round(pixels / 2) * 2)


def _thumbnails_by_seeking(video, times: list[float], height: int = 120) -> np.ndarray:
    """The reference the decode pass's thumbnails are checked against: `(len(times), height, width, 3)` uint8, the
    first frame at or after each time, found by seeking the file, display aspect kept and rotation applied."""
    thumbnails = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        for seconds in times:
            container.seek(int(seconds / stream.time_base) + (stream.start_time or 0), stream=stream)
            frame = None
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 >= seconds + (stream.start_time or 0) * stream.time_base:
                    break
            if frame is None:
                raise ValueError(f"{video}: no frame could be decoded at {seconds:.3f} s for its thumbnail.")
            quarter_turns = (frame.rotation // 90) % 4
            if quarter_turns % 2:  # stored sideways: its width becomes the displayed height
                stored_width, stored_height = height, _even(height * context.height / context.width)
            else:
                stored_width, stored_height = _even(height * context.width / context.height), height
            pixels = frame.reformat(width=stored_width, height=stored_height, format="rgb24").to_ndarray()
            thumbnails.append(np.ascontiguousarray(np.rot90(pixels, k=quarter_turns)))
    return np.stack(thumbnails)

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from lightning_svd.errors import UserError
from lightning_svd.evaluation.ucf101 import (
    OFFICIAL_NUM_VIDEOS,
    ShortVideoError,
    UCF101Index,
    UCF101Protocol,
    UCF101RealClips,
    allocate,
    class_prompt,
    decode_clip,
    make_plan,
    preprocess_generated,
    resize_frames,
)

CLASSES = ("ApplyEyeMakeup", "PlayingPiano", "TableTennisShot")
LEVEL_STEP = 12  # frame k is a flat grey of level 12 k, so the decoded level tells which frame was taken


def write_clip(path: Path, num_frames: int, fps: int, size=(32, 48), codec: str = "mpeg4") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi" if path.suffix == ".avi" else "mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), LEVEL_STEP * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def frame_levels(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()) / LEVEL_STEP)) for f in frames]


@pytest.fixture(scope="module")
def fake_ucf(tmp_path_factory) -> Path:
    """Three classes with 2/1/3 videos (AVI and one MP4), the official split-file layout, fold 1."""
    root = tmp_path_factory.mktemp("ucf")
    splits = root / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(CLASSES, start=1)))
    train = [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 1), ("TableTennisShot/v_TableTennisShot_g08_c01.avi", 3),
             ("TableTennisShot/v_TableTennisShot_g09_c01.mp4", 3)]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "PlayingPiano/v_PlayingPiano_g01_c01.avi",
            "TableTennisShot/v_TableTennisShot_g01_c01.avi"]
    (splits / "trainlist01.txt").write_text("".join(f"{p} {label}\n" for p, label in train))
    (splits / "testlist01.txt").write_text("".join(f"{p}\n" for p in test))
    for relative in [p for p, _ in train] + test:
        write_clip(root / "UCF-101" / relative, num_frames=20, fps=25)
    return root


def test_index_reads_the_official_split_files(fake_ucf):
    index = UCF101Index.from_root(fake_ucf)
    assert index.video_root == fake_ucf / "UCF-101"
    assert index.classes == {1: "ApplyEyeMakeup", 2: "PlayingPiano", 3: "TableTennisShot"}
    assert index.per_class_counts() == {"ApplyEyeMakeup": 2, "PlayingPiano": 1, "TableTennisShot": 3}
    assert [v.split for v in index.videos].count("test") == 3
    assert index.missing_files() == [] and not index.is_official_size()


def test_split_file_errors_name_the_line(fake_ucf, tmp_path):
    with pytest.raises(UserError, match="data.ucf101_root"):
        UCF101Index.from_root(tmp_path / "nowhere")
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 PlayingPiano\n")
    (splits / "trainlist01.txt").write_text("ApplyEyeMakeup/a.avi 2\n")
    (splits / "testlist01.txt").write_text("")
    with pytest.raises(UserError, match="trainlist01.txt line 1: label 2 does not match"):
        UCF101Index.from_root(tmp_path)
    (splits / "trainlist01.txt").write_text("Skiing/a.avi 1\n")
    with pytest.raises(UserError, match="'Skiing' is not in classInd.txt"):
        UCF101Index.from_root(tmp_path)


def test_per_class_counts_of_a_full_size_list_sum_to_13320(tmp_path):
    """Split files alone (no videos needed to count): 101 classes, 13,320 videos, uneven per class."""
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    names = [f"Class{i:03d}" for i in range(1, 102)]
    (splits / "classInd.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, start=1)))
    counts = [131 + (i % 3) for i in range(101)]
    counts[-1] += OFFICIAL_NUM_VIDEOS - sum(counts)
    paths = [f"{n}/v_{n}_g{j:02d}.avi" for n, c in zip(names, counts) for j in range(c)]
    (splits / "trainlist01.txt").write_text("".join(f"{p} {names.index(p.split('/')[0]) + 1}\n" for p in paths[::2]))
    (splits / "testlist01.txt").write_text("".join(f"{p}\n" for p in paths[1::2]))
    index = UCF101Index.from_root(tmp_path)
    assert index.is_official_size()
    assert sum(index.per_class_counts().values()) == OFFICIAL_NUM_VIDEOS
    plan = make_plan(index)
    assert len(plan.samples) == OFFICIAL_NUM_VIDEOS and plan.per_class == dict(zip(names, counts))
    assert plan.comparable and plan.reason is None
    tracking = make_plan(index, UCF101Protocol(num_samples=2048))
    assert len(tracking.samples) == 2048 and len(tracking.real_videos) == 2048
    assert not tracking.comparable and "2048 samples instead of the protocol's 13320" in tracking.reason
    assert max(abs(tracking.per_class[n] - c * 2048 / OFFICIAL_NUM_VIDEOS) for n, c in zip(names, counts)) < 1


def test_prompts_are_the_raw_class_names(fake_ucf):
    plan = make_plan(UCF101Index.from_root(fake_ucf))
    assert [s.prompt for s in plan.samples] == ["ApplyEyeMakeup"] * 2 + ["PlayingPiano"] + ["TableTennisShot"] * 3
    assert [s.seed for s in plan.samples] == list(range(6))
    assert class_prompt("TableTennisShot", "spaced") == "Table Tennis Shot"
    spaced = make_plan(UCF101Index.from_root(fake_ucf), UCF101Protocol(prompt_style="spaced"))
    assert "prompt_style=spaced (paper: raw)" in spaced.reason
    with pytest.raises(UserError, match="prompt style"):
        class_prompt("X", "template")
    with pytest.raises(UserError, match="prompt style"):
        UCF101Protocol(prompt_style="template")
    assert UCF101Protocol(crop_size=[240, 320], resize_size=[240, 432]) == UCF101Protocol()


def test_allocation_keeps_proportions_and_total():
    assert allocate({"a": 10, "b": 20, "c": 30}, 6) == {"a": 1, "b": 2, "c": 3}
    assert sum(allocate({"a": 7, "b": 7, "c": 7}, 10).values()) == 10
    with pytest.raises(UserError, match="1..21"):
        allocate({"a": 7, "b": 7, "c": 7}, 22)


def test_first_16_frames_at_25_fps(tmp_path):
    write_clip(tmp_path / "a.avi", num_frames=20, fps=25)
    frames, selection = decode_clip(tmp_path / "a.avi")
    assert frames.shape == (16, 32, 48, 3) and frames.dtype == np.uint8
    assert selection.frame_indices == tuple(range(16)) and frame_levels(frames) == list(range(16))
    assert selection.timestamps[1] == pytest.approx(0.04) and selection.native_fps == pytest.approx(25.0)


def test_other_frame_rates_are_resampled_to_25_fps(tmp_path):
    write_clip(tmp_path / "b.mp4", num_frames=21, fps=30, codec="libx264")
    frames, selection = decode_clip(tmp_path / "b.mp4")
    expected = [round(k * 30 / 25) for k in range(16)]
    assert list(selection.frame_indices) == expected and frame_levels(frames) == expected


def test_short_videos_are_refused(tmp_path):
    write_clip(tmp_path / "c.avi", num_frames=12, fps=25)
    with pytest.raises(ShortVideoError, match="ends before 0.600 s"):
        decode_clip(tmp_path / "c.avi")


def test_generated_preprocessing_shapes_and_crop():
    videos = torch.zeros(2, 16, 3, 320, 576, dtype=torch.uint8)
    videos[..., 288:] = 255  # right half white
    out = preprocess_generated(videos)
    assert out.shape == (2, 16, 3, 240, 320) and out.dtype == torch.uint8
    # the 240x432 frame is cropped at columns 56..376, so the white edge (column 216) lands at column 160
    assert out[0, 0, 0, 0, 158].item() == 0 and out[0, 0, 0, 0, 162].item() == 255
    as_float = preprocess_generated(videos.float() / 127.5 - 1)
    assert as_float.dtype == torch.float32 and as_float.shape == (2, 16, 3, 240, 320)
    with pytest.raises(ValueError, match="320, 576"):
        preprocess_generated(torch.zeros(1, 16, 3, 256, 256))


def test_resize_is_antialiased():
    stripes = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    stripes[..., ::2] = 255
    half = resize_frames(stripes[None], (4, 4))[0]
    assert int(half.min()) >= 100 and int(half.max()) <= 155  # averaged; point sampling would give 0 or 255


def test_real_clips_dataset_records_frames(fake_ucf):
    index = UCF101Index.from_root(fake_ucf)
    protocol = UCF101Protocol(crop_size=(24, 32))
    plan = make_plan(index, protocol)
    dataset = UCF101RealClips(index, plan.real_videos, protocol)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["video"].shape == (3, 16, 3, 24, 32) and batch["video"].dtype == torch.uint8
    assert batch["frame_indices"][0].tolist() == list(range(16))
    assert batch["native_size"][0].tolist() == [32, 48]
    assert "crop_size=(24, 32)" in plan.reason
    assert len(plan.real_set_id(index)) == 16


def test_fvd_protocol_key_follows_the_real_set(fake_ucf):
    index = UCF101Index.from_root(fake_ucf)
    identity = {"kind": "random", "seed": 0}
    full = make_plan(index).fvd_protocol(index, identity)
    assert full.num_samples == 6 and full.resolution == (240, 320) and "25 fps" in full.preprocessing
    assert make_plan(index).fvd_protocol(index, identity).key() == full.key()
    smaller = make_plan(index, UCF101Protocol(num_samples=3)).fvd_protocol(index, identity)
    assert smaller.num_samples == 3 and smaller.key() != full.key()
    assert make_plan(index).fvd_protocol(index, {"kind": "random", "seed": 1}).key() != full.key()

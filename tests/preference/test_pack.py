"""Study packs: the demo pack is valid and browser-ready; every way a manifest can be wrong gets one clear error."""

import json
import os

import av
import numpy as np
import pytest

from lightning_svd.errors import UserError
from lightning_svd.preference.demo_pack import main as demo_pack_main
from lightning_svd.preference.pack import StudyPack


def rewrite_manifest(pack_dir, change):
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    change(manifest)
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))


def test_demo_pack_is_complete_and_browser_playable(pack_dir):
    pack = StudyPack.load(pack_dir)
    assert pack.arms == ("crisp", "wobbly", "degraded")
    assert len(pack.prompts) == 3 and len(pack.videos) == 9
    for video in pack.videos.values():
        assert video.path.is_relative_to(pack.root)
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.profile in ("Main", "Constrained Baseline", "Baseline")
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert sum(1 for _ in container.decode(stream)) == 12
        head = video.path.read_bytes()[:64]
        assert head.index(b"moov") < 64, "the index must come first so playback starts while loading"


def test_demo_pack_command_line(tmp_path, capsys):
    demo_pack_main([str(tmp_path / "cli_pack"), "--prompts", "2", "--arms", "2", "--frames", "4"])
    pack = StudyPack.load(tmp_path / "cli_pack")
    assert pack.arms == ("crisp", "degraded") and len(pack.videos) == 4
    assert "manifest.json" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo_pack_main([str(tmp_path / "bad"), "--arms", "9"])


@pytest.mark.parametrize("change, message", [
    (lambda m: m["videos"][0].update(path="../outside.mp4"), "outside the pack"),
    (lambda m: m["videos"][0].update(path="/etc/passwd"), "must be relative"),
    (lambda m: m["videos"][0].update(path="videos/none.mp4"), "does not exist"),
    (lambda m: m["videos"].pop(), "has no video for arm"),
    (lambda m: m["videos"].append(dict(m["videos"][0])), "two videos"),
    (lambda m: m["videos"][0].update(arm="ghost"), "not one of"),
    (lambda m: m["videos"][0].update(prompt_id="ghost"), "unknown prompt_id"),
    (lambda m: m.update(arms=["crisp"]), "at least two"),
    (lambda m: m.update(arms=["crisp", "crisp", "degraded"]), "unique"),
    (lambda m: m["arms"].append("degraded:x"), "reserved"),
    (lambda m: m["prompts"].append(dict(m["prompts"][0])), "repeated"),
    (lambda m: m["prompts"][0].update(text=""), "non-empty text"),
    (lambda m: m.pop("arms"), "keys prompts, arms and videos"),
    (lambda m: m["videos"][0].update(seed=-1), r"video 'videos/\S+': seed -1 must be an integer >= 0"),
    (lambda m: m["videos"][0].update(seed="3"), "seed '3' must be an integer >= 0"),
    (lambda m: m["videos"][0].update(sample=True), "sample True must be an integer >= 0"),
    (lambda m: m["videos"][0].update(sample=1.5), "sample 1.5 must be an integer >= 0"),
])
def test_broken_manifests_fail_with_a_message(pack_dir, change, message):
    rewrite_manifest(pack_dir, change)
    with pytest.raises(UserError, match=message):
        StudyPack.load(pack_dir)


def test_symlink_leaving_the_pack_is_refused(pack_dir, tmp_path):
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not yours")
    os.symlink(outside, pack_dir / "videos" / "link.mp4")
    rewrite_manifest(pack_dir, lambda m: m["videos"][0].update(path="videos/link.mp4"))
    with pytest.raises(UserError, match="outside the pack"):
        StudyPack.load(pack_dir)


def test_videos_that_browsers_cannot_play_are_refused(pack_dir):
    target = pack_dir / "videos" / "mpeg4.mp4"
    with av.open(str(target), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    rewrite_manifest(pack_dir, lambda m: m["videos"][0].update(path="videos/mpeg4.mp4"))
    with pytest.raises(UserError, match="'videos/mpeg4.mp4' of the study pack is mpeg4, not H.264; re-encode"):
        StudyPack.load(pack_dir)
    target.write_bytes(b"not a video")
    with pytest.raises(UserError, match="not a readable MP4"):
        StudyPack.load(pack_dir)


def test_missing_pack_and_unreadable_manifest(tmp_path):
    with pytest.raises(UserError, match="study.pack=DIR"):
        StudyPack.load(None)
    with pytest.raises(UserError, match="no manifest.json"):
        StudyPack.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        StudyPack.load(tmp_path)


def test_written_pack_loads_and_plays_back(tmp_path):
    from lightning_svd.preference.pack import StudyPack, write_pack
    from lightning_svd.video import read_frames

    prompts = [{"id": "p0", "text": "a red circle"}, {"id": "p1", "text": "a blue square"}]
    rng = np.random.default_rng(0)
    videos = {(arm, p["id"]): rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8) for arm in ("base", "cut")
              for p in prompts}
    pack = StudyPack.load(write_pack(tmp_path / "pack", prompts, videos, fps=8))
    assert pack.arms == ("base", "cut") and [p.id for p in pack.prompts] == ["p0", "p1"]
    frames = read_frames(pack.videos[("cut", "p1")].path)
    assert frames.shape == (6, 32, 48, 3)
    assert np.abs(frames.astype(int) - videos[("cut", "p1")]).mean() < 60


def test_written_pack_keeps_seed_and_sample_per_video(tmp_path):
    """An ablation's pack: one prompt id per (prompt, seed, sample), the same text repeated, seed and sample named."""
    from lightning_svd.preference.pack import write_pack

    samples = [(seed, sample) for seed in (0, 1) for sample in (0, 1)]
    prompts = [{"id": f"p003-s{seed}-k{sample}", "text": "a red circle"} for seed, sample in samples]
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    videos = {(arm, p["id"]): frames for arm in ("base", "cut") for p in prompts}
    meta = {(arm, f"p003-s{seed}-k{sample}"): {"seed": np.int64(seed), "sample": sample}
            for arm in ("base", "cut") for seed, sample in samples[:3]}
    pack = StudyPack.load(write_pack(tmp_path / "pack", prompts, videos, fps=4, video_meta=meta))
    assert [p.id for p in pack.prompts] == ["p003-s0-k0", "p003-s0-k1", "p003-s1-k0", "p003-s1-k1"]
    assert {p.text for p in pack.prompts} == {"a red circle"}
    video = pack.videos[("cut", "p003-s1-k0")]
    assert (video.seed, video.sample) == (1, 0)
    assert (pack.videos[("base", "p003-s1-k1")].seed, pack.videos[("base", "p003-s1-k1")].sample) == (None, None)
    entries = json.loads((tmp_path / "pack" / "manifest.json").read_text())["videos"]
    assert {"seed": 1, "sample": 0}.items() <= entries[2].items() and "seed" not in entries[3]


@pytest.mark.parametrize("meta, message", [
    ({("base", "p0"): {"seed": -2}}, r"video_meta for \('base', 'p0'\): seed -2 must be an integer >= 0"),
    ({("base", "p0"): {"step": 3}}, "hold only"),
    ({("ghost", "p0"): {"seed": 1}}, "belong to a video"),
])
def test_bad_video_meta_is_refused_before_writing(tmp_path, meta, message):
    from lightning_svd.preference.pack import write_pack

    videos = {(arm, "p0"): np.zeros((2, 16, 16, 3), dtype=np.uint8) for arm in ("base", "cut")}
    with pytest.raises(UserError, match=message):
        write_pack(tmp_path / "pack", [{"id": "p0", "text": "a red circle"}], videos, fps=4, video_meta=meta)
    assert not (tmp_path / "pack").exists()

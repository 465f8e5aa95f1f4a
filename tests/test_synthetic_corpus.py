import json

import av
import cv2
import numpy as np
import pytest

from lightning_svd.errors import UserError
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus, load_truth
from lightning_svd.synthetic.corpus import plan_video
from lightning_svd.synthetic.scenes import SceneRenderer, caption_for
from lightning_svd.video import read_frames


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between each frame and the one before it (index i: frames i-1 -> i)."""
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    return np.concatenate([[0.0], diffs])


def test_same_seed_gives_same_truth_bytes_and_same_frames(small_corpus, small_corpus_spec, tmp_path):
    again = ensure_corpus(small_corpus_spec, tmp_path, progress=False)
    for first, second in zip(corpus_videos(small_corpus), corpus_videos(again), strict=True):
        assert first.with_suffix(".json").read_bytes() == second.with_suffix(".json").read_bytes()
        np.testing.assert_array_equal(read_frames(first), read_frames(second))


def test_other_seed_gives_other_corpus(tmp_path):
    a = plan_video(CorpusSpec(seed=1), 0)
    b = plan_video(CorpusSpec(seed=2), 0)
    assert [s.caption or s.pattern_seed for s in a[0]] != [s.caption or s.pattern_seed for s in b[0]]


def test_videos_decode_with_pyav_as_recorded(small_corpus, small_corpus_spec):
    videos = corpus_videos(small_corpus)
    assert len(videos) == small_corpus_spec.num_videos
    for video in videos:
        truth = load_truth(video)
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert float(stream.average_rate) == pytest.approx(truth["fps"])
            frames = [f for f in container.decode(stream)]
        assert len(frames) == truth["num_frames"]
        assert (frames[0].width, frames[0].height) == (truth["width"], truth["height"])
        spans = sorted((s["start_frame"], s["end_frame"]) for s in truth["scenes"])
        assert spans[0][0] == 0 and spans[-1][1] == truth["num_frames"]
        assert 4.0 <= truth["duration_s"] <= 8.0


def test_ground_truth_matches_the_pixels(small_corpus):
    """Hard cuts jump exactly at the recorded frame, static scenes do not move, fades pass through black."""
    checked = {"hard": 0, "static": 0, "fade": 0, "moving": 0}
    for video in corpus_videos(small_corpus):
        truth = load_truth(video)
        frames = read_frames(video)
        diffs = frame_differences(frames)
        for cut in truth["cuts"]:
            if cut["kind"] == "hard":
                f = cut["frame"]
                neighbours = max(diffs[f - 1], diffs[f + 1] if f + 1 < len(diffs) else 0.0)
                assert diffs[f] > 1.4 * neighbours, f"{video.name}: no jump at hard cut {f}"
                checked["hard"] += 1
            if cut["kind"] == "fade":
                darkest = frames[cut["start_frame"]:cut["end_frame"]].mean(axis=(1, 2, 3)).min()
                assert darkest < 3.0
                checked["fade"] += 1
        for scene in truth["scenes"]:
            inside = diffs[scene["start_frame"] + 1:scene["end_frame"]]
            if scene["motion"] == "static" and scene["degradation"] != "noise":
                assert inside.max() < 1.0, f"{video.name}: static scene {scene['index']} moves"
                checked["static"] += 1
            if scene["motion"] != "static" and scene["degradation"] is None:
                assert inside.mean() > 2.0
                checked["moving"] += 1
    assert all(checked.values()), checked


def test_scene_degradations_and_text_do_what_the_truth_says():
    """Degradations change the footage; the text overlay is drawn afterwards and stays crisp on any footage."""
    spec = CorpusSpec(seed=3)
    scenes = [s for i in range(12) for s in plan_video(spec, i)[0]]
    seen, degraded_with_text = set(), 0
    for scene in scenes:
        renderer = SceneRenderer(scene, spec.width, spec.height)
        degraded = renderer.render(5).astype(np.float32)
        kind, scene.degradation = scene.degradation, None
        clean = SceneRenderer(scene, spec.width, spec.height).render(5).astype(np.float32)
        footage = np.ones(degraded.shape[:2], dtype=bool)
        if scene.text:
            overlay = renderer.text_outline
            np.testing.assert_array_equal(degraded[overlay], clean[overlay])
            footage = ~cv2.dilate(overlay.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            degraded_with_text += kind is not None

        def laplacian(img, inner=footage[1:-1, 1:-1]):
            centre = img[1:-1, 1:-1]
            return np.abs(img[2:, 1:-1] + img[:-2, 1:-1] + img[1:-1, 2:] + img[1:-1, :-2] - 4 * centre)[inner].mean()

        if kind == "blur":
            assert laplacian(degraded) < 0.7 * laplacian(clean)
        elif kind == "noise":
            assert laplacian(degraded) > 1.5 * laplacian(clean)
        elif kind == "low_contrast":
            assert degraded[footage].std(axis=0).mean() < 0.6 * clean[footage].std(axis=0).mean()
        if scene.text:
            assert 0.01 < scene.text_area < 0.3
            assert (clean == 255).all(axis=-1).mean() > 0.2 * scene.text_area
        seen.add(kind)
    assert {"blur", "noise", "low_contrast", None} <= seen
    assert degraded_with_text


def test_corpus_is_cached_and_spec_is_validated(small_corpus, small_corpus_spec, isolated_cache):
    manifest = small_corpus / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert ensure_corpus(small_corpus_spec, isolated_cache, progress=False) == small_corpus
    assert manifest.stat().st_mtime_ns == stamp
    assert json.loads(manifest.read_text())["key"] == small_corpus_spec.key()
    with pytest.raises(UserError, match="corpus.width"):
        ensure_corpus(CorpusSpec(width=161), isolated_cache)
    assert not list(isolated_cache.glob("corpus/*.partial-*"))


def test_reading_a_span_seeks_and_gives_the_same_frames_as_a_full_decode(small_corpus):
    video = corpus_videos(small_corpus)[1]
    everything = read_frames(video)
    for start, stop, step in [(0, 10, 1), (61, 75, 2), (100, None, 3), (len(everything) - 2, None, 1)]:
        np.testing.assert_array_equal(read_frames(video, start, stop, step), everything[start:stop:step])


def test_captions_name_degradations_only_when_asked_and_flat_scenes_are_flat():
    """The ablation corpus' captions never name a planted degradation (a text-conditioned proxy would tie it to the
    words); a test corpus may ask for the words. texture=0 renders a flat background: only shapes and text vary."""
    quality_words = ("blurry", "grainy", "washed-out")
    default, named = CorpusSpec(degraded_fraction=1.0), CorpusSpec(degraded_fraction=1.0, caption_degradation=True)
    for index in range(3):
        plain = [caption_for(s) for s in plan_video(default, index)[0]]
        worded = [caption_for(s, name_degradation=named.caption_degradation) for s in plan_video(named, index)[0]]
        assert not any(word in caption for caption in plain for word in quality_words)
        assert all(any(word in caption for word in quality_words) for caption in worded)
    scene = plan_video(CorpusSpec(), 0)[0][0]
    assert "textured" not in caption_for(scene, textured=False) and "textured" in caption_for(scene)
    scene.shapes, scene.degradation, scene.text = [], None, None
    flat = SceneRenderer(scene, 64, 48, texture=0.0).render(0)
    textured = SceneRenderer(scene, 64, 48, texture=1.0).render(0)
    assert flat.reshape(-1, 3).std(axis=0).max() == 0 and textured.reshape(-1, 3).std(axis=0).max() > 10
    with pytest.raises(UserError, match="corpus.texture"):
        CorpusSpec(texture=1.5).validate()


def test_noise_grain_and_degradation_kinds_are_corpus_options():
    """Grain 2 plants noise constant over 2x2 cells (it survives a downscale that averages 1-pixel noise away);
    grain 1 leaves the per-pixel noise as it was; `degradations` limits the kinds degraded scenes draw."""
    spec = CorpusSpec(degraded_fraction=1.0, degradations=("noise",))
    scenes = [s for i in range(3) for s in plan_video(spec, i)[0]]
    assert {s.degradation for s in scenes} == {"noise"}
    scene = scenes[0]
    scene.text = None
    clean_scene = plan_video(spec, 0)[0][0]
    clean_scene.text, clean_scene.degradation = None, None
    clean = SceneRenderer(clean_scene, 64, 48).render(0).astype(np.float32)
    degraded = SceneRenderer(scene, 64, 48, noise_grain=2).render(0).astype(np.float32)
    noise, unclipped = degraded - clean, ((degraded > 0) & (degraded < 255)).all(axis=-1)
    cells = noise.reshape(24, 2, 32, 2, 3)
    same_in_cell = np.isclose(cells, cells[:, :1, :, :1], atol=1.5).all(axis=(1, 3, 4))  # frames are rounded
    assert same_in_cell[unclipped.reshape(24, 2, 32, 2).all(axis=(1, 3))].all()
    fine = SceneRenderer(scene, 64, 48, noise_grain=1).render(0).astype(np.float32) - clean
    def halved(x):  # 2x2 means: 1-pixel noise loses half its std, 2-pixel grain keeps it
        return x.reshape(24, 2, 32, 2, 3).mean(axis=(1, 3)).std()

    assert halved(noise) > 1.6 * halved(fine)
    for bad, match in ((CorpusSpec(degradations=("grain",)), "corpus.degradations"),
                       (CorpusSpec(degradations=()), "corpus.degradations"),
                       (CorpusSpec(noise_grain=0), "corpus.noise_grain")):
        with pytest.raises(UserError, match=match):
            bad.validate()


def test_shape_scale_grows_only_the_shapes_and_keeps_the_original_corpus_key():
    """Larger shapes for small proxies' frames: the same draws with every radius scaled, a key of their own, and the
    corpus of the original sizes keeps its key (and cache)."""
    assert CorpusSpec(shape_scale=1.0).key() == CorpusSpec().key() != CorpusSpec(shape_scale=1.5).key()
    plain, large = plan_video(CorpusSpec(), 2)[0], plan_video(CorpusSpec(shape_scale=1.5), 2)[0]
    for small_scene, large_scene in zip(plain, large, strict=True):
        assert caption_for(small_scene) == caption_for(large_scene)
        assert [1.5 * s.radius for s in small_scene.shapes] == pytest.approx([s.radius for s in large_scene.shapes])
    with pytest.raises(UserError, match="corpus.shape_scale"):
        CorpusSpec(shape_scale=0.0).validate()


def test_captions_name_the_background_colour_first_in_a_fixed_position():
    """The tiny text tower marks colour words by position: the background's colour is always the caption's second
    word, whatever the shapes, their motion, an overlay or a named degradation add after it."""
    spec = CorpusSpec(degraded_fraction=0.5, text_fraction=0.5, zoom_fraction=0.3, seed=5)
    scenes = [scene for index in range(6) for scene in plan_video(spec, index)[0]]
    for scene in scenes:
        words = caption_for(scene).split()
        assert words[0] in ("a", "an") and words[1] == scene.background_color and "behind" in words
        assert words[words.index("behind") + 2] == scene.shapes[0].color
    degraded = next(scene for scene in scenes if scene.degradation)
    assert caption_for(degraded, name_degradation=True).endswith(f" of {caption_for(degraded)}")


def test_zoom_scenes_are_opt_in_and_recorded_in_the_sidecar():
    """Without zoom_fraction the corpus (and its cache key) is the one made without zooms; with it, moving
    scenes zoom in or out, and the truth says which, how fast the picture moves, and the caption says so too."""
    assert CorpusSpec().key() == "8a59b3432007240c"  # generator 4's default corpus, zoom_fraction unset
    assert not any(s.zoom for i in range(12) for s in plan_video(CorpusSpec(), i)[0])
    spec = CorpusSpec(zoom_fraction=0.5, seed=4)
    zooms = [s for i in range(8) for s in plan_video(spec, i)[0] if s.motion == "zoom"]
    assert {s.zoom > 0 for s in zooms} == {True, False}
    for scene in zooms:
        SceneRenderer(scene, spec.width, spec.height)
        truth = scene.to_truth()
        assert truth["motion"] == "zoom" and truth["zoom"] == ("in" if scene.zoom > 0 else "out")
        assert truth["speed"] > 0.2 and truth["direction_deg"] is None
        assert f"zooms {truth['zoom']}" in caption_for(scene)
    with pytest.raises(UserError, match="corpus.zoom_fraction"):
        CorpusSpec(zoom_fraction=1.5).validate()


def test_a_zoom_magnifies_the_picture_about_its_centre():
    """Frame t + k is frame t scaled by exp(rate k) about the centre (up to the edges, where new content enters)."""
    spec = CorpusSpec(zoom_fraction=1.0, text_fraction=0.0, static_fraction=0.0, degraded_fraction=0.0)
    scene = next(s for i in range(8) for s in plan_video(spec, i)[0] if s.zoom > 0)
    renderer = SceneRenderer(scene, spec.width, spec.height)
    first, later = renderer.render(10).astype(np.float32), renderer.render(16).astype(np.float32)
    scale = np.exp(scene.zoom * 6)
    centre = ((spec.width - 1) / 2, (spec.height - 1) / 2)
    warp = cv2.getRotationMatrix2D(centre, 0.0, scale)
    predicted = cv2.warpAffine(first, warp, (spec.width, spec.height), flags=cv2.INTER_LINEAR)
    inner = (slice(10, -10), slice(16, -16))
    assert np.abs(predicted - later)[inner].mean() < 0.25 * np.abs(first - later)[inner].mean()

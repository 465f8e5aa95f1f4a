"""The domain network: windows and labels from the corpus' sidecars, a degradation detector that beats chance on
videos it never trained on, deterministic features, and a cache that trains once."""

import numpy as np
import pytest
import torch

from data_modules.clips import resize_and_crop
from lightning_svd.ablation.evaluate import as_uint8_videos
from lightning_svd.evaluation.domain import (
    HEADS,
    REASON,
    DomainNet,
    cached_domain_net,
    examples_from_videos,
    scene_windows,
    train_domain_net,
)
from lightning_svd.synthetic import CorpusSpec, ensure_corpus, load_truth
from lightning_svd.synthetic.corpus import corpus_videos
from lightning_svd.synthetic.scenes import SceneRenderer, random_scene
from lightning_svd.video import read_frames

# Flat scenes, half of them degraded. With corpus seed 4 the last three videos (held out) show every kind, in 15
# clean, 8 blurred, 16 noisy and 7 low-contrast windows, and the nine others every kind too.
SPEC = CorpusSpec(num_videos=12, texture=0.0, degraded_fraction=0.5, min_seconds=4, max_seconds=5, seed=4)
STEPS = 150


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return corpus_videos(ensure_corpus(SPEC, tmp_path_factory.mktemp("domain"), progress=False))


@pytest.fixture(scope="module")
def split(videos):
    return examples_from_videos(videos[:-3], 4, 32, 32), examples_from_videos(videos[-3:], 4, 32, 32)


@pytest.fixture(scope="module")
def trained(split):
    return train_domain_net(*split, seed=0, steps=STEPS, threads=1)


def test_examples_are_the_training_clips_labelled_by_their_scene(videos, split):
    """A window is read, resized and quantised as the DataModule's clips and the ablation's real clips are."""
    train, heldout = split
    assert train.videos.dtype == np.uint8 and train.videos.shape[1:] == (4, 32, 32, 3)
    assert set(train.labels) == set(HEADS) and all(v.dtype == np.int64 for v in train.labels.values())
    assert len(train.groups) == len(train) and not set(train.groups) & set(heldout.groups)
    first, scene = next(scene_windows(load_truth(videos[0]), 4, 1))
    expected = as_uint8_videos(resize_and_crop(read_frames(videos[0], first, first + 4), 32, 32)[None])[0]
    one = examples_from_videos(videos[:1], 4, 32, 32, max_windows_per_scene=1)
    np.testing.assert_array_equal(one.videos[0], expected)
    assert one.labels["degradation"][0] == HEADS["degradation"].index(scene["degradation"] or "clean")
    assert one.labels["shape_color"][0] == HEADS["shape_color"].index(scene["shape_color"])
    assert one.groups[0] == videos[0].name


def test_windows_stay_inside_their_scene_and_clear_of_transitions():
    truth = {"scenes": [{"start_frame": 0, "end_frame": 20}, {"start_frame": 32, "end_frame": 40}],
             "cuts": [{"start_frame": 20, "end_frame": 32}, {"start_frame": 8, "end_frame": 9}]}
    assert [first for first, _ in scene_windows(truth, span=4, max_windows=5)] == [0, 4, 12, 16, 32, 36]


def test_detector_beats_chance_on_heldout_videos(trained):
    """Held-out degradation accuracy exceeds the majority-class share (16 of 46 windows, 0.35) by 0.1 or more.

    Measured on one thread for training seeds 0-7: 0.50-0.83 (seed 0: 0.83), noise recall 0.94-1.0. Noise is
    always found; clean, blur and low contrast vary with the seed (the one blurred held-out scene is missed by
    every seed), so the margin is set well below the worst seed's 0.15. Background colour is learnt as well.
    """
    net, report = trained
    assert report.num_heldout == 46 and report.steps == STEPS
    assert report.heldout_accuracy["degradation"] >= report.chance["degradation"] + 0.1
    assert report.degradation_class_accuracy["noise"] >= 0.9
    assert report.heldout_accuracy["background_color"] >= report.chance["background_color"] + 0.3


def _clip(scene) -> np.ndarray:
    renderer = SceneRenderer(scene, SPEC.width, SPEC.height, texture=0.0)
    frames = np.stack([renderer.render(t) for t in range(4)])
    return as_uint8_videos(resize_and_crop(frames, 32, 32)[None])[0]


def test_noisy_clips_look_more_degraded_than_their_clean_twins(trained):
    """The same eight unseen scenes rendered clean and with the corpus' noise (measured: 0.07-0.91 clean, 0.54-0.96
    noisy, 8 of 8 pairs ordered)."""
    net, _ = trained
    clean, noisy = [], []
    for seed in range(8):
        scene = random_scene(np.random.default_rng(100 + seed), static=False, text=False, degraded=False)
        clean.append(_clip(scene))
        scene.degradation, scene.degradation_level = "noise", 0.5
        noisy.append(_clip(scene))
    p_clean, p_noisy = net.degraded_probability(np.stack(clean)), net.degraded_probability(np.stack(noisy))
    assert p_clean.shape == (8,) and ((p_clean >= 0) & (p_clean <= 1)).all()
    assert p_noisy.mean() > p_clean.mean() + 0.3
    assert (p_noisy > p_clean).sum() >= 7


def test_features_identity_and_frame_size(trained, split):
    net, _ = trained
    videos = torch.from_numpy(split[1].videos[:5]).permute(0, 1, 4, 2, 3)
    features = net(videos)
    assert features.shape == (5, 64) and torch.equal(features, net(videos))
    identity = net.identity()
    assert identity["kind"] == "domain" and len(identity["weights_sha256"]) == 64
    assert not net.comparable and net.reason == REASON
    assert {"degradation", "background_color"} <= set(net.predict(split[1].videos[:2]))
    with pytest.raises(ValueError, match="trained on 32x32"):
        net(torch.zeros(1, 4, 3, 16, 16, dtype=torch.uint8))


def test_training_is_deterministic_for_a_seed(split):
    train, heldout = split
    few = type(train)(train.videos[:16], {h: v[:16] for h, v in train.labels.items()}, train.groups[:16])
    first, _ = train_domain_net(few, heldout, seed=3, steps=3, threads=1)
    second, _ = train_domain_net(few, heldout, seed=3, steps=3, threads=1)
    other, _ = train_domain_net(few, heldout, seed=4, steps=3, threads=1)
    assert first.identity() == second.identity() != other.identity()


def test_cache_trains_once_and_reloads_the_same_network(tmp_path, trained, split):
    calls = []

    def build():
        calls.append(1)
        return trained

    net, report = cached_domain_net(tmp_path, "abc123", build)
    again, report_again = cached_domain_net(tmp_path, "abc123", build)
    assert len(calls) == 1 and report == report_again == trained[1]
    assert isinstance(again, DomainNet) and again.identity() == trained[0].identity() == net.identity()
    videos = split[1].videos[:4]
    np.testing.assert_array_equal(again.degraded_probability(videos), trained[0].degraded_probability(videos))
    assert [p.name for p in (tmp_path / "domain_net").iterdir()] == ["abc123"]

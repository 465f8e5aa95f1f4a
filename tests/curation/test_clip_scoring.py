"""CLIP caption similarity and the LAION aesthetic head on a tiny open_clip model built from a local config."""

import json

import numpy as np
import pytest
import torch
from curation_media import textured

from lightning_svd.curation.clip_scoring import (
    AestheticMlp,
    ClipEncoder,
    LaionAesthetic,
    caption_scores,
    caption_similarity,
)
from lightning_svd.curation.pipeline import VideoCurator

TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "curation-tiny-clip.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def test_random_encoder_says_so_and_embeds_unit_vectors(tiny_config):
    torch.manual_seed(0)
    encoder = ClipEncoder("curation-tiny-clip", config_file=tiny_config)
    assert encoder.random_weights and "random" in encoder.describe()
    images = encoder.encode_images([textured(48, 64, 1), textured(48, 64, 2)])
    texts = encoder.encode_texts(["a red circle", "three blue squares"])
    assert images.shape == (2, 32) and texts.shape == (2, 32)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(2))


def test_encoder_loads_local_weights(tiny_config, tmp_path):
    torch.manual_seed(1)
    first = ClipEncoder("curation-tiny-clip", config_file=tiny_config)
    weights = tmp_path / "tiny_clip.pt"
    torch.save(first.model.state_dict(), weights)
    torch.manual_seed(2)
    second = ClipEncoder("curation-tiny-clip", weights=str(weights), config_file=tiny_config)
    frame = [textured(48, 64, 3)]
    torch.testing.assert_close(first.encode_images(frame), second.encode_images(frame))
    assert not second.random_weights and str(weights) in second.describe()
    with pytest.raises(FileNotFoundError, match="curation.clip.weights"):
        ClipEncoder("curation-tiny-clip", weights=str(tmp_path / "missing.pt"), config_file=tiny_config)


def test_caption_similarity_is_the_mean_cosine_over_frames():
    text = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    other = torch.nn.functional.normalize(torch.randn(8), dim=-1)
    images = torch.stack([torch.stack([text[0], text[0], text[0]]), torch.stack([text[1], -text[1], other])])
    values = caption_similarity(images, text)
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values[1] == pytest.approx(float(other @ text[1]) / 3, abs=1e-6)


def test_every_caption_is_scored_as_it_would_be_alone(tiny_config):
    """One text batch for all captions gives each caption the score it gets alone (a one-caption clip keeps the
    value it had when only the first caption was scored)."""
    torch.manual_seed(4)
    encoder = ClipEncoder("curation-tiny-clip", config_file=tiny_config)
    images = encoder.encode_images([textured(48, 64, seed) for seed in range(6)]).reshape(2, 3, -1)
    captions = [{"caption_sidecar": "a red circle"},
                {"caption_coca": "three blue squares", "caption_vblip": "a square moves left"}]
    scores = caption_scores(images, captions, encoder.encode_texts)
    assert [list(s) for s in scores] == [["caption_sidecar"], ["caption_coca", "caption_vblip"]]
    for i, texts in enumerate(captions):
        for column, text in texts.items():
            alone = caption_similarity(images[i:i + 1], encoder.encode_texts([text]))[0]
            assert scores[i][column] == pytest.approx(alone, abs=1e-6)
    assert caption_scores(images, [{}, {}], encoder.encode_texts) == [{}, {}]


def test_laion_head_has_the_released_layout_and_loads_it(tmp_path):
    head = AestheticMlp(768).eval()
    expected = {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
    assert set(head.state_dict()) == expected
    assert sum(p.numel() for p in head.parameters()) == 927_969
    weights = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(head.state_dict(), weights)
    scorer = LaionAesthetic(768, str(weights))
    embeddings = torch.nn.functional.normalize(torch.randn(2, 3, 768), dim=-1)
    with torch.no_grad():
        expected_scores = head(embeddings).squeeze(-1).mean(dim=1).tolist()
    assert scorer.scores(embeddings) == pytest.approx(expected_scores)
    with pytest.raises(ValueError, match="does not fit"):
        LaionAesthetic(512, str(weights))


def test_pipeline_fills_clip_and_laion_scores_and_labels_random_weights(small_corpus, cfg_copy, tiny_config):
    cfg_copy["clip"].update(enabled=True, model="curation-tiny-clip", config_file=tiny_config)
    cfg_copy["aesthetic"]["backend"] = "laion"
    cfg_copy["ocr"]["backend"] = "none"
    curator = VideoCurator(cfg_copy)
    rows = curator.curate(str(sorted((small_corpus / "videos").glob("*.mp4"))[0])).rows
    assert rows and all(r["status"] == "ok" for r in rows)
    assert all(np.isfinite(r["clip_score"]) and -1 <= r["clip_score"] <= 1 for r in rows)
    assert all("random" in r["clip_score_model"] and "laion" in r["aesthetic_score_model"] for r in rows)
    assert all(r["ocr_area"] is None and r["ocr_area_model"] is None for r in rows)
    assert rows[0]["caption"] == rows[0]["caption_sidecar"]
    assert all(r["clip_score"] == r["clip_score_sidecar"] and r["clip_score_coca"] is None for r in rows)


def test_random_weights_are_seeded_so_reruns_agree_cell_for_cell(small_corpus, cfg_copy, tiny_config):
    """Each worker builds its own CLIP tower and LAION head: on random weights they must be the same ones every time,
    whatever torch's RNG held (two runs, or a resumed one, give the same clip_score and aesthetic_score)."""
    cfg_copy["clip"].update(enabled=True, model="curation-tiny-clip", config_file=tiny_config)
    cfg_copy["aesthetic"]["backend"] = "laion"
    cfg_copy["ocr"]["backend"] = "none"
    video = str(sorted((small_corpus / "videos").glob("*.mp4"))[0])
    runs = []
    for seed in (11, 12):
        torch.manual_seed(seed)
        runs.append([(r["clip_score"], r["aesthetic_score"]) for r in VideoCurator(cfg_copy).curate(video).rows])
        runs[-1].append(float(torch.rand(1)))  # the caller's RNG is left as it was
    assert runs[0][:-1] == runs[1][:-1] and runs[0][-1] != runs[1][-1]


TINY_COCA = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16,
                            "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
             "text_cfg": {"context_length": 76, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1,
                          "embed_cls": True, "output_tokens": True},
             "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1,
                                "attn_pooler_heads": 2},
             "custom_text": True}


@pytest.fixture(scope="module")
def tiny_coca(tmp_path_factory):
    """A tiny CoCa config and a checkpoint of its (random) weights, as a released checkpoint would be loaded."""
    import open_clip

    folder = tmp_path_factory.mktemp("coca")
    config = folder / "curation-tiny-coca.json"
    config.write_text(json.dumps(TINY_COCA))
    open_clip.add_model_config(str(config))
    torch.manual_seed(3)
    model = open_clip.create_model("curation-tiny-coca")
    weights = folder / "tiny_coca.pt"
    torch.save(model.state_dict(), weights)
    return str(config), str(weights)


def test_coca_captions_middle_frames_greedily_and_needs_weights(small_corpus, cfg_copy, tiny_coca):
    from lightning_svd.curation.coca import CocaCaptioner

    config, weights = tiny_coca
    captioner = CocaCaptioner("curation-tiny-coca", weights, config_file=config, max_tokens=6)
    frames = [textured(48, 64, 1), textured(48, 64, 2)]
    first = captioner.captions(frames)
    assert len(first) == 2 and all(isinstance(c, str) for c in first)
    assert CocaCaptioner("curation-tiny-coca", weights, config_file=config, max_tokens=6).captions(frames) == first
    with pytest.raises(ValueError, match="needs a local checkpoint"):
        CocaCaptioner("curation-tiny-coca", None, config_file=config)
    cfg_copy["captions"]["coca"].update(enabled=True, model="curation-tiny-coca", weights=weights,
                                        config_file=config, max_tokens=6)
    cfg_copy["ocr"]["backend"] = "none"
    rows = VideoCurator(cfg_copy).curate(str(sorted((small_corpus / "videos").glob("*.mp4"))[0])).rows
    assert all(isinstance(r["caption_coca"], str) and r["caption"] == r["caption_coca"] for r in rows)
    cfg_copy["captions"]["coca"]["weights"] = None
    with pytest.raises(ValueError, match="coca.weights"):
        VideoCurator(cfg_copy)


@pytest.mark.parametrize("combine", ["mean", "max"])
def test_clip_score_combines_every_caption_a_clip_has(small_corpus, cfg_copy, tiny_config, tiny_coca, combine):
    """Sidecar and CoCa captions: each scored alone in clip_score_<source>, clip_score their mean (or max), the
    combination in clip_score_model and in the stage's config hash."""
    config, weights = tiny_coca
    cfg_copy["captions"]["coca"].update(enabled=True, model="curation-tiny-coca", weights=weights,
                                        config_file=config, max_tokens=6)
    cfg_copy["clip"].update(enabled=True, model="curation-tiny-clip", config_file=tiny_config, combine=combine)
    cfg_copy["ocr"]["backend"] = "none"
    torch.manual_seed(5)
    curator = VideoCurator(cfg_copy)
    rows = curator.curate(str(sorted((small_corpus / "videos").glob("*.mp4"))[0])).rows
    assert rows and all(r["caption_sidecar"] and r["caption_coca"] for r in rows)
    for row in rows:
        pair = [row["clip_score_coca"], row["clip_score_sidecar"]]
        expected = max(pair) if combine == "max" else sum(pair) / 2
        assert row["clip_score"] == pytest.approx(expected) and pair[0] != pair[1]
        assert f"; {combine} over caption_coca, caption_sidecar" in row["clip_score_model"]
    other = dict(cfg_copy, clip={**cfg_copy["clip"], "combine": "max" if combine == "mean" else "mean"})
    assert VideoCurator(other).stage_hashes["clip_score"] != curator.stage_hashes["clip_score"]
    with pytest.raises(ValueError, match="curation.clip.combine must be one of mean, max"):
        VideoCurator(dict(cfg_copy, clip={**cfg_copy["clip"], "combine": "median"}))

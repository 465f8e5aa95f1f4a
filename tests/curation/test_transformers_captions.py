"""VideoBLIP and LLM captions through transformers, on tiny models the tests build and save (no downloads)."""

import pytest
import torch
from curation_media import textured

from lightning_svd.curation.pipeline import VideoCurator
from lightning_svd.curation.report import render_markdown, summarize
from lightning_svd.curation.table import rows_to_table
from lightning_svd.curation.transformers_captions import LlmCaptionMerger, VideoBlipCaptioner

WORDS = ["a", "the", "red", "blue", "green", "teal", "circle", "circles", "square", "squares", "moving", "still",
         "slowly", "quickly", "camera", "pans", "video", "clip", "of", "over", "textured", "background", "shot", "with",
         "words", "on", "screen", "and", "one", "sentence"]
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


def save_tiny_tokenizer(folder, chat_template: str | None = None) -> int:
    """A word-level tokenizer built offline; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return len(vocab)


def spread_weights(model: torch.nn.Module) -> None:
    """Random weights far from the near-uniform default init, so greedy outputs depend on the input."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)


@pytest.fixture(scope="module")
def tiny_vblip(tmp_path_factory) -> str:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, BlipImageProcessor

    folder = tmp_path_factory.mktemp("vblip")
    vocab_size = save_tiny_tokenizer(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    config = Blip2Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        qformer_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "encoder_hidden_size": 32, "vocab_size": vocab_size},
        text_config={"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": vocab_size, "word_embed_proj_dim": 32,
                     "max_position_embeddings": 128, "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0},
        num_query_tokens=4,
    )
    model = Blip2ForConditionalGeneration(config)
    spread_weights(model)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("llm")
    vocab_size = save_tiny_tokenizer(folder)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=256, bos_token_id=2, eos_token_id=3, pad_token_id=0))
    spread_weights(model)
    model.save_pretrained(folder)
    return str(folder)


def test_videoblip_attends_to_every_frame_and_loads_saved_weights(tiny_vblip):
    captioner = VideoBlipCaptioner(tiny_vblip, num_frames=3, max_new_tokens=6)
    model = captioner.model
    assert model.query_tokens.std() > 0.2  # the saved weights, not a fresh init
    seen, visual = [], []
    model.qformer.register_forward_hook(
        lambda module, args, kwargs, output: seen.append(kwargs["encoder_hidden_states"].shape), with_kwargs=True)
    model.language_projection.register_forward_hook(lambda module, args, output: visual.append(output))
    clip_a = [textured(96, 160, seed) for seed in (1, 2, 3)]
    clip_b = [textured(96, 160, seed) for seed in (4, 5, 6)]
    captions = captioner.captions([clip_a, clip_b])
    # 3 frames x (16 patches + class token) reach the Q-Former as one sequence per clip
    assert seen == [torch.Size([1, 3 * 17, 32])] * 2
    assert visual[0].shape == (1, 4, 32) and not torch.allclose(visual[0], visual[1])
    assert all(isinstance(c, str) and c for c in captions)
    again = VideoBlipCaptioner(tiny_vblip, num_frames=3, max_new_tokens=6).captions([clip_a, clip_b])
    assert again == captions
    assert "weights from" in captioner.describe() and "random" not in captioner.describe()
    random = VideoBlipCaptioner(tiny_vblip, random_weights=True, num_frames=3, max_new_tokens=6)
    assert random.captions([clip_a]) == VideoBlipCaptioner(tiny_vblip, random_weights=True, num_frames=3,
                                                           max_new_tokens=6).captions([clip_a])
    assert "random weights" in random.describe()


def test_llm_merges_the_captions_of_each_row_and_skips_rows_without_any(tiny_llm):
    merger = LlmCaptionMerger(tiny_llm, ["caption_coca", "caption_vblip"], max_new_tokens=5)
    prompt = merger.prompt_for(["a red circle", "the camera pans"])
    assert "- a red circle\n- the camera pans" in prompt
    rows = [{"caption_coca": "a red circle", "caption_vblip": "the camera pans"},
            {"caption_coca": None, "caption_vblip": None},
            {"caption_coca": "two blue squares", "caption_vblip": None}]
    merged = merger.captions(rows)
    assert isinstance(merged[0], str) and merged[1] is None and isinstance(merged[2], str)
    alone = merger.captions([rows[2]])
    assert alone == [merged[2]]  # left padding: a row's caption does not depend on its batch
    with pytest.raises(ValueError, match="captions"):
        LlmCaptionMerger(tiny_llm, ["caption_coca"], prompt="Summarise:")


def test_llm_applies_the_tokenizers_chat_template(tiny_llm, tmp_path):
    import shutil

    folder = tmp_path / "chat"
    shutil.copytree(tiny_llm, folder)
    save_tiny_tokenizer(folder, chat_template="{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}<s>")
    merger = LlmCaptionMerger(str(folder), ["caption_sidecar"], max_new_tokens=3)
    assert merger.prompt_for(["a teal circle"]).startswith("<s> ")
    assert isinstance(merger.captions([{"caption_sidecar": "a teal circle"}])[0], str)


def test_curate_fills_each_caption_column_and_labels_random_weights(small_corpus, cfg_copy, tiny_vblip, tiny_llm):
    cfg_copy["ocr"]["backend"] = "none"
    cfg_copy["captions"]["vblip"].update(enabled=True, model=tiny_vblip, random_weights=True, num_frames=2,
                                         max_new_tokens=4)
    cfg_copy["captions"]["llm"].update(enabled=True, model=tiny_llm, inputs=["caption_sidecar", "caption_vblip"],
                                       max_new_tokens=4)
    result = VideoCurator(cfg_copy).curate(str(sorted((small_corpus / "videos").glob("*.mp4"))[0]))
    rows = result.rows
    assert rows and all(r["status"] == "ok" for r in rows), result.error
    for row in rows:
        assert isinstance(row["caption_vblip"], str) and isinstance(row["caption_llm"], str)
        assert "random weights" in row["caption_vblip_model"] and "VideoBLIP, 2 frames" in row["caption_vblip_model"]
        assert f"weights from {tiny_llm}" in row["caption_llm_model"]
        assert "inputs include captions from random weights" in row["caption_llm_model"]
        assert row["caption_coca"] is None and row["caption_coca_model"] is None
        assert row["caption"] == row["caption_vblip"]
    table = rows_to_table(rows)
    report = summarize(table, [{"stage_seconds": result.seconds, "errors": {}, "cuts": {}, "videos": ["v"]}])
    assert report["counts"]["clips_with_caption_llm"] == len(rows)
    assert any("random weights" in m for m in report["models"]["caption_vblip"])
    markdown = render_markdown({**report, "table": "t", "this_run": {"videos_processed": 1, "shards_skipped": 0,
                                                                     "wall_seconds": 1.0, "clips_per_second": 1.0}})
    assert f"| caption_vblip | {len(rows)} | transformers:Blip2ForConditionalGeneration" in markdown


def test_caption_settings_fail_before_any_video(cfg_copy, tiny_vblip, tmp_path):
    vblip, llm = cfg_copy["captions"]["vblip"], cfg_copy["captions"]["llm"]
    vblip["enabled"] = True
    with pytest.raises(ValueError, match="curation.captions.vblip.model"):
        VideoCurator(cfg_copy)
    vblip["model"] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        VideoCurator(cfg_copy)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        VideoCurator(cfg_copy)
    vblip["random_weights"] = True
    assert VideoCurator(cfg_copy).captioners.vblip_frames == 8
    vblip["enabled"] = False
    llm.update(enabled=True, model=tiny_vblip, inputs=["caption_coca", "caption_vblip"])
    with pytest.raises(ValueError, match=r"captioners that are off"):
        VideoCurator(cfg_copy)
    llm["inputs"] = ["caption_llm"]
    with pytest.raises(ValueError, match="llm.inputs must list"):
        VideoCurator(cfg_copy)

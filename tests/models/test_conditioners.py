"""Conditioners: open_clip towers from local weights, micro-conditioning, noise-augmented concat latent,
per-key CFG dropout and the container that assembles crossattn / vector / concat."""

import math
import socket

import open_clip
import pytest
import torch
from torch import nn

from lightning_svd.models.autoencoder import build_autoencoder
from lightning_svd.models.conditioners import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPImageEmbedder,
    Conditioner,
    ConditioningInput,
    MicroConditioningEmbedder,
    NoiseAugmentedFrameEncoder,
    OpenCLIPTextEncoder,
    build_conditioner,
)
from lightning_svd.models.state_dict_io import CheckpointError, write_state_dict

TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 16, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 3},
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download (tokenizers, weights) fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("conditioners must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def reference_clip():
    """A random tiny open_clip CLIP whose weights the tests write in the formats we read."""
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP).eval()
    with torch.no_grad():  # non-trivial LayerNorms so the final-LN choice is visible
        model.ln_final.weight.add_(torch.randn_like(model.ln_final.weight))
        model.ln_final.bias.add_(torch.randn_like(model.ln_final.bias))
    return model


def reference_tokens(model, texts, layer: str) -> torch.Tensor:
    """open_clip's own forward, captured after the last or penultimate block, then the final LayerNorm."""
    captured = {}
    block = model.transformer.resblocks[-1 if layer == "last" else -2]
    handle = block.register_forward_hook(lambda module, inputs, output: captured.setdefault("x", output))
    with torch.no_grad():
        model.encode_text(open_clip.tokenize(texts))
        handle.remove()
        return model.ln_final(captured["x"])


def test_text_encoder_loads_open_clip_and_sd21_files_and_picks_the_penultimate_layer(reference_clip, tmp_path):
    texts = ["a red car driving at night", "two dogs"]
    bare = write_state_dict(reference_clip.state_dict(), tmp_path / "open_clip_model.safetensors")
    text_only = {f"cond_stage_model.model.{k}": v for k, v in reference_clip.state_dict().items() if "visual" not in k}
    text_only["model.diffusion_model.out.2.weight"] = torch.zeros(1)
    sd21 = tmp_path / "sd21.ckpt"
    torch.save({"state_dict": text_only}, sd21)
    for path in (bare, sd21):
        encoder = OpenCLIPTextEncoder(TINY_CLIP, weights=path)
        with torch.no_grad():
            penultimate = encoder(texts, num_frames=3)
        assert penultimate.shape == (2 * 3, 77, 32)
        expected = reference_tokens(reference_clip, texts, "penultimate")
        torch.testing.assert_close(penultimate[::3], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(penultimate[1], penultimate[0])  # repeated per frame
    last = OpenCLIPTextEncoder(TINY_CLIP, weights=bare, layer="last")
    with torch.no_grad():
        final = last(texts)
    torch.testing.assert_close(final, reference_tokens(reference_clip, texts, "last"), rtol=1e-5, atol=1e-5)
    assert (final - penultimate[::3]).abs().max() > 1e-2
    assert encoder.depth == 2 and last.depth == 3


def test_a_random_text_tower_is_the_same_in_every_run_and_leaves_the_run_seed_alone():
    """A UNet trained on a random tower's features must meet the same tower wherever its weights load; building
    the tower draws nothing from the run's random stream."""
    torch.manual_seed(1)
    first = OpenCLIPTextEncoder(TINY_CLIP)
    after_tower = torch.rand(3)
    torch.manual_seed(2)
    second = OpenCLIPTextEncoder(TINY_CLIP)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_tower)


def test_image_embedder_preprocesses_and_matches_open_clip(reference_clip, tmp_path):
    official = {f"conditioner.embedders.0.open_clip.model.{k}": v for k, v in reference_clip.state_dict().items()}
    official["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)
    embedder = CLIPImageEmbedder(TINY_CLIP, weights=write_state_dict(official, tmp_path / "svd.safetensors"))
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        embedding = embedder(images, num_frames=4)
        resized = torch.nn.functional.interpolate(images, size=(16, 16), mode="bicubic", antialias=True)
        normalised = ((resized + 1) / 2 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(
            1, 3, 1, 1
        )
        expected = reference_clip.encode_image(normalised)
    assert embedding.shape == (2 * 4, 1, 24)
    torch.testing.assert_close(embedding[::4, 0], expected, rtol=1e-5, atol=1e-5)


def test_paper_towers_have_the_released_sizes():
    with torch.device("meta"):
        image = CLIPImageEmbedder("ViT-H-14")
        text = OpenCLIPTextEncoder("ViT-H-14")
    assert image.embed_dim == 1024 and image.visual.proj.shape == (1280, 1024) and image.image_size == (224, 224)
    assert text.width == 1024 and len(text.transformer.resblocks) == 24 and text.depth == 23


def test_open_clip_weight_errors(reference_clip, tmp_path):
    state = reference_clip.state_dict()
    twice = {**{f"a.{k}": v for k, v in state.items()}, **{f"b.{k}": v.clone() for k, v in state.items()}}
    with pytest.raises(CheckpointError, match="several candidate towers"):
        CLIPImageEmbedder(TINY_CLIP, weights=write_state_dict(twice, tmp_path / "twice.safetensors"))
    chosen = CLIPImageEmbedder(TINY_CLIP, weights=tmp_path / "twice.safetensors", weights_prefix="b.")
    assert torch.equal(chosen.visual.conv1.weight, state["visual.conv1.weight"])
    with pytest.raises(CheckpointError, match="no open_clip"):
        OpenCLIPTextEncoder(TINY_CLIP, weights=write_state_dict({"x": torch.zeros(1)}, tmp_path / "x.safetensors"))
    wider = dict(TINY_CLIP, text_cfg=dict(TINY_CLIP["text_cfg"], layers=4))
    with pytest.raises(CheckpointError, match="missing .*transformer.resblocks.3"):
        OpenCLIPTextEncoder(wider, weights=write_state_dict(state, tmp_path / "clip.safetensors"))
    with pytest.raises(ValueError, match="unknown open_clip model"):
        OpenCLIPTextEncoder("ViT-Nonexistent")
    with pytest.raises(ValueError, match="Hugging Face or timm"):
        OpenCLIPTextEncoder(dict(TINY_CLIP, text_cfg=dict(TINY_CLIP["text_cfg"], hf_model_name="roberta-base")))


def literal_sinusoid(value: float, dim: int) -> list[float]:
    half = dim // 2
    frequencies = [math.exp(-math.log(10000.0) * i / half) for i in range(half)]
    return [math.cos(value * f) for f in frequencies] + [math.sin(value * f) for f in frequencies]


def test_micro_conditioning_is_the_literal_sinusoid_in_key_order():
    embedder = MicroConditioningEmbedder(("fps_id", "motion_bucket_id", "cond_aug"))
    fps, motion, aug = torch.tensor([6.0, 3.0]), torch.tensor([127.0, 20.0]), torch.tensor([0.02, 1.5])
    out = embedder(fps, motion, aug, num_frames=2)
    assert out.shape == (4, 768) and embedder.output_dim == 768
    expected = [
        literal_sinusoid(f, 256) + literal_sinusoid(m, 256) + literal_sinusoid(a, 256)
        for f, m, a in ((6.0, 127.0, 0.02), (3.0, 20.0, 1.5))
    ]
    expected = torch.tensor(expected).repeat_interleave(2, dim=0)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # Per-frame values (camera angles) and per-key sizes (SV3D uses 512 for angles).
    angles = MicroConditioningEmbedder(("cond_aug", "azimuth"), dim={"cond_aug": 256, "azimuth": 512})
    azimuth = torch.tensor([[0.0, 1.0, 2.0]])
    out = angles(torch.tensor([0.1]), azimuth, num_frames=3)
    assert out.shape == (3, 768)
    torch.testing.assert_close(out[2, 256:], torch.tensor(literal_sinusoid(2.0, 512)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="per clip .* or per frame"):
        angles(torch.tensor([0.1]), torch.zeros(1, 5), num_frames=3)


@pytest.fixture(scope="module")
def noisy_autoencoder():
    torch.manual_seed(3)
    model = build_autoencoder("tiny")
    with torch.no_grad():
        model.quant_conv.bias[4:].fill_(0.5)  # a clearly non-zero posterior variance
    return model.eval()


def test_concat_latent_is_the_unscaled_posterior_mode_of_the_noised_frame(noisy_autoencoder):
    encoder = NoiseAugmentedFrameEncoder(noisy_autoencoder)
    frames = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        clean, used = encoder(frames, num_frames=3, cond_aug=0.0)
        mode = noisy_autoencoder.encode(frames).mode()
        assert clean.shape == (6, 4, 8, 8)
        torch.testing.assert_close(clean[::3], mode)
        torch.testing.assert_close(clean[2], clean[0])
        assert (clean[::3] - mode * 0.18215).abs().max() > 1e-3  # not scaled
        assert (clean[::3] - noisy_autoencoder.encode(frames).sample()).abs().max() > 1e-3  # not sampled
        assert torch.equal(used["cond_aug"], torch.zeros(2))

        noised, used = encoder(frames, num_frames=1, cond_aug=torch.tensor([0.5, 0.1]), generator=seeded(5))
        noise = torch.randn(frames.shape, generator=seeded(5))
        expected = noisy_autoencoder.encode(frames + torch.tensor([0.5, 0.1]).view(2, 1, 1, 1) * noise).mode()
        torch.testing.assert_close(noised, expected)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sampled_cond_aug_is_log_normal_minus_3_half(noisy_autoencoder):
    encoder = NoiseAugmentedFrameEncoder(noisy_autoencoder)
    log_sigma = encoder.sample_cond_aug(20000, seeded(6), torch.device("cpu")).log()
    assert abs(log_sigma.mean().item() + 3.0) < 0.02
    assert abs(log_sigma.std().item() - 0.5) < 0.02
    frames = torch.zeros(3, 3, 16, 16)
    _, first = encoder(frames, generator=seeded(7))
    _, again = encoder(frames, generator=seeded(7))
    assert torch.equal(first["cond_aug"], again["cond_aug"]) and first["cond_aug"].unique().numel() == 3


class ConstantEmbedder(nn.Module):
    """A stand-in embedder: a per-clip constant row of a given rank, repeated per frame."""

    def __init__(self, shape: tuple[int, ...], value: float):
        super().__init__()
        self.shape, self.value = shape, value

    def forward(self, clips, num_frames: int = 1):
        return torch.full((len(clips) * num_frames, *self.shape), self.value)


def dropped_clips(output: torch.Tensor, num_frames: int) -> torch.Tensor:
    per_frame = output.flatten(1).abs().sum(dim=1) == 0
    per_clip = per_frame.view(-1, num_frames)
    assert torch.equal(per_clip.all(dim=1), per_clip.any(dim=1)), "a clip's frames must be dropped together"
    return per_clip[:, 0]


def test_per_key_dropout_rates_zero_whole_clips_and_are_deterministic():
    conditioner = Conditioner(
        [
            ConditioningInput(ConstantEmbedder((1, 4), 1.0), ["image"], drop_rate=0.3, unconditional="zeros"),
            ConditioningInput(ConstantEmbedder((2,), 2.0), ["fps"]),
            ConditioningInput(ConstantEmbedder((4, 2, 2), 3.0), ["frame"], drop_rate=0.1, unconditional="zeros"),
        ]
    ).train()
    clips, frames = 4000, 2
    batch = {"image": range(clips), "fps": range(clips), "frame": range(clips)}
    out = conditioner(batch, num_frames=frames, generator=seeded(8))
    image_dropped, frame_dropped = dropped_clips(out["crossattn"], frames), dropped_clips(out["concat"], frames)
    assert abs(image_dropped.float().mean().item() - 0.3) < 0.03
    assert abs(frame_dropped.float().mean().item() - 0.1) < 0.02
    both = (image_dropped & frame_dropped).float().mean().item()
    assert abs(both - 0.03) < 0.015  # independent per key
    assert torch.all(out["vector"] == 2.0)  # rate 0: never dropped
    repeat = conditioner(batch, num_frames=frames, generator=seeded(8))
    assert torch.equal(repeat["crossattn"], out["crossattn"]) and torch.equal(repeat["concat"], out["concat"])
    other = conditioner(batch, num_frames=frames, generator=seeded(9))
    assert not torch.equal(other["crossattn"], out["crossattn"])
    assert torch.all(conditioner.eval()(batch, num_frames=frames)["crossattn"] == 1.0)  # eval: no dropout
    assert torch.all(conditioner(batch, num_frames=frames, drop=False)["concat"] == 3.0)


def test_text_dropout_and_unconditional_use_the_empty_prompt(reference_clip, tmp_path):
    weights = write_state_dict(reference_clip.state_dict(), tmp_path / "clip.safetensors")
    conditioner = build_conditioner(
        [
            {
                "embedder": "open_clip_text",
                "input_keys": ["caption"],
                "options": {"model": TINY_CLIP, "weights": weights},
                "drop_rate": 1.0,
                "unconditional": "empty_text",
            }
        ]
    )
    encoder = conditioner.inputs[0].embedder
    batch = {"caption": ["a cat", "a storm at sea"]}
    with torch.no_grad():
        empty = encoder(["", ""])
        dropped = conditioner(batch, drop=True)["crossattn"]
        kept = conditioner(batch, drop=False)["crossattn"]
        cond, uncond = conditioner.conditional_and_unconditional(batch)
    torch.testing.assert_close(dropped, empty)
    torch.testing.assert_close(uncond["crossattn"], empty)
    torch.testing.assert_close(cond["crossattn"], kept)
    assert (kept - empty).abs().max() > 1e-3


def test_image_to_video_conditioner_assembles_in_config_order(noisy_autoencoder):
    conditioner = build_conditioner(
        [
            {
                "embedder": "clip_image",
                "input_keys": ["cond_frames_without_noise"],
                "options": {"model": TINY_CLIP},
                "drop_rate": 0.1,
                "unconditional": "zeros",
            },
            {"embedder": "micro_conditioning", "input_keys": ["fps_id", "motion_bucket_id"]},
            {
                "embedder": "noise_augmented_frame",
                "input_keys": ["cond_frames"],
                "drop_rate": 0.1,
                "unconditional": "zeros",
            },
            {"embedder": "micro_conditioning", "input_keys": ["cond_aug"], "options": {"keys": ["cond_aug"]}},
        ],
        autoencoder=noisy_autoencoder,
    )
    frame = torch.rand(2, 3, 16, 16, generator=seeded(10)) * 2 - 1
    batch = {
        "cond_frames_without_noise": frame,
        "cond_frames": frame,
        "fps_id": torch.tensor([6.0, 6.0]),
        "motion_bucket_id": torch.tensor([127.0, 60.0]),
    }
    with torch.no_grad():
        out = conditioner(batch, num_frames=3, generator=seeded(11), drop=False)
        assert out["crossattn"].shape == (6, 1, 24)
        assert out["vector"].shape == (6, 768) and out["concat"].shape == (6, 4, 8, 8)
        # The cond_aug the frame encoder drew is the one embedded in the last 256 vector features.
        _, used = conditioner.inputs[2].embedder(frame, cond_aug=None, generator=seeded(11))
        aug_rows = torch.tensor([literal_sinusoid(a, 256) for a in used["cond_aug"].tolist()])
        torch.testing.assert_close(out["vector"][::3, 512:], aug_rows, rtol=1e-4, atol=1e-4)
        motion_rows = torch.tensor([literal_sinusoid(m, 256) for m in (127.0, 60.0)])
        torch.testing.assert_close(out["vector"][::3, 256:512], motion_rows, rtol=1e-5, atol=1e-5)

        given = {**batch, "cond_aug": torch.tensor([0.02, 0.02])}
        cond, uncond = conditioner.conditional_and_unconditional(given, num_frames=3, generator=seeded(12))
    assert torch.count_nonzero(uncond["crossattn"]) == 0 and torch.count_nonzero(uncond["concat"]) == 0
    assert torch.equal(uncond["vector"], cond["vector"])
    assert torch.count_nonzero(cond["concat"]) > 0 and torch.count_nonzero(cond["crossattn"]) > 0
    assert not any(p.requires_grad for p in conditioner.parameters())


def test_conditioner_errors_name_the_problem(noisy_autoencoder):
    with pytest.raises(ValueError, match="unknown embedder 'clap'"):
        build_conditioner([{"embedder": "clap", "input_keys": ["x"]}])
    with pytest.raises(ValueError, match="needs the autoencoder"):
        build_conditioner([{"embedder": "noise_augmented_frame", "input_keys": ["cond_frames"]}])
    with pytest.raises(ValueError, match="not 'keep'"):
        ConditioningInput(MicroConditioningEmbedder(("fps_id",)), ["fps_id"], drop_rate=0.2)
    with pytest.raises(ValueError, match="does not take text"):
        ConditioningInput(ConstantEmbedder((2,), 1.0), ["x"], drop_rate=0.1, unconditional="empty_text")
    mismatched = Conditioner(
        [ConditioningInput(ConstantEmbedder((2,), 1.0), ["x"]), ConditioningInput(ConstantEmbedder((3,), 1.0), ["y"])]
    )
    with pytest.raises(ValueError, match="one row per frame"):
        mismatched({"x": range(2), "y": range(3)})
    conditioner = build_conditioner([{"embedder": "micro_conditioning", "input_keys": ["fps_id", "motion_bucket_id"]}])
    with pytest.raises(KeyError, match="batch lacks \\['motion_bucket_id'\\]"):
        conditioner({"fps_id": torch.tensor([6.0])})


def test_a_frozen_text_tower_encodes_each_caption_once_and_forgets_on_new_weights(monkeypatch):
    encoder = OpenCLIPTextEncoder(TINY_CLIP, layer="penultimate").requires_grad_(False)
    texts = ["a red textured background", "", "a blue circle", "a red textured background"]
    encoded = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda batch: encoded.append(list(batch)) or original(batch))
    first = encoder(texts, num_frames=2)
    again = encoder(texts[::-1], num_frames=2)
    assert encoded == [texts[:3]]  # each distinct caption once, none the second time
    assert torch.equal(first, original(texts).repeat_interleave(2, dim=0))
    assert torch.equal(again, first.flip(0))  # the same features, in the order asked
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoder(texts[:1])
    assert len(encoded) == 2  # autocast features are their own entries
    encoder.load_state_dict(encoder.state_dict())
    encoder(texts[:1])
    assert encoded[-1] == texts[:1] and len(encoder.feature_cache) == 1  # new weights: encoded afresh
    encoder.requires_grad_(True)
    encoder(texts[:1])
    assert len(encoded) == 4  # a tower that trains is never cached
    monkeypatch.setattr(OpenCLIPTextEncoder, "FEATURE_CACHE_SIZE", 2)
    encoder.requires_grad_(False)
    assert encoder(texts).shape[0] == 4 and len(encoder.feature_cache) == 2  # the most recent captions stay

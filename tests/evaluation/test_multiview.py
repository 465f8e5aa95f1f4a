import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from lightning_svd.errors import UserError
from lightning_svd.evaluation.multiview import (
    LPIPS,
    CLIPImageSimilarity,
    MultiViewMetrics,
    psnr,
    read_orbit,
)
from lightning_svd.models.state_dict_io import write_state_dict

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """Random AlexNet features and random non-negative LPIPS heads, written as the official files are laid out."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = torchvision.models.alexnet().features.state_dict()
    backbone = write_state_dict({f"features.{k}": v for k, v in features.items()}, folder / "alexnet.safetensors")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS.CHANNELS["alex"])}
    torch.save(heads, folder / "alex.pth")
    return backbone, folder / "alex.pth"


@pytest.fixture(scope="module")
def lpips_net(lpips_files):
    return LPIPS("alex", *lpips_files)


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory):
    torch.manual_seed(0)
    tower = CLIPImageSimilarity(TINY_CLIP)
    return write_state_dict(tower.embedder.state_dict(), tmp_path_factory.mktemp("clip") / "clip.safetensors")


def images(count: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 3, 8, 8, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def test_psnr_of_a_known_error():
    zeros, tenth = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1)
    torch.testing.assert_close(psnr(zeros, tenth), torch.full((2,), 20.0))
    assert float(psnr(zeros, zeros)[0]) == pytest.approx(100.0)


def test_lpips_is_zero_for_identical_images_and_grows_with_noise(lpips_net):
    x = images(4)
    torch.testing.assert_close(lpips_net(x, x), torch.zeros(4))
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=generator)
    distances = [float(lpips_net(x, (x + level * noise).clamp(-1, 1)).mean()) for level in (0.05, 0.2, 0.6)]
    assert distances == sorted(distances) and distances[0] > 0
    torch.testing.assert_close(lpips_net(x, x.flip(0)), lpips_net(x.flip(0), x))


def test_lpips_first_layer_follows_the_formula(lpips_files, tmp_path):
    backbone, _ = lpips_files
    heads = {f"lin{i}.model.1.weight": torch.zeros(1, c, 1, 1) for i, c in enumerate(LPIPS.CHANNELS["alex"])}
    heads["lin0.model.1.weight"] = torch.ones(1, 64, 1, 1)
    torch.save(heads, tmp_path / "first_only.pth")
    net = LPIPS("alex", backbone, tmp_path / "first_only.pth")
    x, y = images(2, seed=2), images(2, seed=3)
    trunk = torchvision.models.alexnet().features[:2]
    trunk.load_state_dict(net.slices[0].state_dict())
    shift, scale = torch.tensor(LPIPS.SHIFT).view(1, 3, 1, 1), torch.tensor(LPIPS.SCALE).view(1, 3, 1, 1)
    fx, fy = trunk((x - shift) / scale), trunk((y - shift) / scale)
    fx, fy = fx / (fx.norm(dim=1, keepdim=True) + 1e-10), fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
    expected = (fx - fy).pow(2).sum(dim=1).mean(dim=(1, 2))
    torch.testing.assert_close(net(x, y), expected)


def test_lpips_refuses_images_too_small_for_its_network(lpips_net):
    with pytest.raises(UserError, match="at least 31 pixels a side, got 16x16; raise multiview.size"):
        lpips_net(images(1, size=16), images(1, size=16))
    assert lpips_net(images(1, size=31), images(1, size=31)).shape == (1,)


def test_lpips_weight_errors_name_the_file(lpips_files, tmp_path):
    backbone, heads = lpips_files
    with pytest.raises(UserError, match="LPIPS head weights not found: .*multiview.lpips.head_weights"):
        LPIPS("alex", backbone, tmp_path / "missing.pth")
    with pytest.raises(UserError, match="does not hold torchvision vgg features"):
        LPIPS("vgg", backbone, heads)
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="linear heads"):
        LPIPS("alex", backbone, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="unknown LPIPS network"):
        LPIPS("squeeze", backbone, heads)


def test_missing_clip_weights_name_their_key(tmp_path):
    with pytest.raises(UserError, match="multiview.clip.weights"):
        CLIPImageSimilarity(TINY_CLIP, weights=tmp_path / "missing.safetensors")


def test_clip_similarity_loads_local_weights(clip_weights):
    similarity = CLIPImageSimilarity(TINY_CLIP, weights=clip_weights)
    x = images(3, size=48)
    torch.testing.assert_close(similarity(x, x), torch.ones(3))
    assert float(similarity(x, images(3, size=48, seed=5)).max()) < 1.0
    assert len(similarity.identity()["sha256"]) == 64
    reloaded = CLIPImageSimilarity(TINY_CLIP, weights=clip_weights)
    torch.testing.assert_close(reloaded(x, x.flip(0)), similarity(x, x.flip(0)))


def test_multiview_metrics_average_views_then_objects(lpips_net, clip_weights):
    metric = MultiViewMetrics(lpips_net, CLIPImageSimilarity(TINY_CLIP, weights=clip_weights))
    truth = images(2 * 21, seed=7).view(2, 21, 3, 64, 64)
    generated = truth.clone()
    generated[1] = (generated[1] + 0.1).clamp(-1, 1)
    metric.update(generated, truth)
    scores, per_object = metric.compute(), metric.per_object()
    assert per_object["psnr"][0] == pytest.approx(100.0)
    assert per_object["lpips"][0] == pytest.approx(0.0, abs=1e-6) and per_object["lpips"][1] > 0
    assert scores["psnr"] == pytest.approx(np.mean(per_object["psnr"]))
    assert scores["clip_s"] <= 1.0 + 1e-6
    labels = metric.labels()
    assert labels["comparable"] and labels["lpips_network"]["net"] == "alex"


def test_multiview_metrics_check_orbits_and_label_random_clip():
    metric = MultiViewMetrics(clip=CLIPImageSimilarity(TINY_CLIP))
    with pytest.raises(ValueError, match="needs 21"):
        metric.update(torch.zeros(1, 20, 3, 8, 8), torch.zeros(1, 20, 3, 8, 8))
    with pytest.raises(ValueError, match="both be"):
        metric.update(torch.zeros(1, 21, 3, 8, 8), torch.zeros(1, 21, 3, 8, 9))
    black = torch.zeros(1, 21, 3, 32, 32, dtype=torch.uint8)
    metric.update(black, black + 255)
    assert metric.compute()["lpips"] is None and metric.compute()["psnr"] == pytest.approx(0.0)
    labels = metric.labels()
    assert not labels["comparable"]
    assert labels["reason"] == "LPIPS switched off (no weights given); CLIP-S: random-init extractor"


def test_read_orbit_composites_transparency(tmp_path):
    for view in range(21):
        rgba = np.zeros((8, 10, 4), dtype=np.uint8)
        rgba[:4, :, :] = (10, 20, 30, 255)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{view:03d}.png")
    orbit = read_orbit(tmp_path)
    assert orbit.shape == (21, 3, 8, 10) and orbit.dtype == torch.uint8
    assert orbit[0, :, 0, 0].tolist() == [10, 20, 30] and orbit[0, :, 7, 0].tolist() == [255, 255, 255]
    (tmp_path / "000.png").unlink()
    with pytest.raises(UserError, match="expected 21 view images"):
        read_orbit(tmp_path)

import pytest
import torch
import torchvision.models.video as video_models
from evaluation_fakes import TinyI3D, random_videos, save_tiny_i3d

from lightning_svd.errors import UserError
from lightning_svd.evaluation.extractors import (
    I3DTorchscript,
    RandomVideoFeatures,
    TorchvisionVideoClassifier,
    build_extractor,
)
from lightning_svd.models.state_dict_io import write_state_dict


def test_i3d_torchscript_gets_channels_first_clips_and_the_papers_flags(tiny_i3d_path):
    extractor = I3DTorchscript(tiny_i3d_path, num_features=10)
    videos = random_videos(3, frames=6, size=12)
    features = extractor(videos)
    expected = TinyI3D()(videos.permute(0, 2, 1, 3, 4), rescale=True, resize=True, return_features=True)
    assert features.shape == (3, 10)
    torch.testing.assert_close(features, expected)
    assert extractor.comparable and extractor.reason is None
    assert extractor.identity()["rescale"] and extractor.identity()["resize"]


def test_i3d_other_flags_change_features_and_are_labelled(tiny_i3d_path):
    videos = random_videos(2)
    unscaled = I3DTorchscript(tiny_i3d_path, rescale=False, num_features=10)
    assert not unscaled.comparable and "rescale" in unscaled.reason
    assert not torch.allclose(unscaled(videos), I3DTorchscript(tiny_i3d_path, num_features=10)(videos))


def test_i3d_identity_hashes_the_weight_file(tiny_i3d_path, tmp_path):
    first = I3DTorchscript(tiny_i3d_path, num_features=10).identity()["sha256"]
    module = TinyI3D()
    with torch.no_grad():
        module.project.bias.fill_(1.0)
    other_path = save_tiny_i3d(tmp_path / "other.pt", module)
    assert I3DTorchscript(other_path, num_features=10).identity()["sha256"] != first


def test_i3d_errors_name_the_problem(tiny_i3d_path, tmp_path):
    with pytest.raises(UserError, match="weights.i3d"):
        I3DTorchscript(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a torchscript"):
        I3DTorchscript(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match=r"expected \(B, 400\)"):
        I3DTorchscript(tiny_i3d_path)(random_videos(1))
    with pytest.raises(ValueError, match="uint8"):
        I3DTorchscript(tiny_i3d_path, num_features=10)(random_videos(1).float())


def test_torchvision_classifier_loads_local_weights_and_returns_pooled_features(tmp_path):
    torch.manual_seed(1)
    reference = video_models.mc3_18(weights=None).eval()
    path = write_state_dict(reference.state_dict(), tmp_path / "mc3_18.safetensors")
    extractor = TorchvisionVideoClassifier("mc3_18", weights=path, resize_size=(32, 32), crop_size=(32, 32))
    videos = random_videos(2, frames=4, size=40)
    features = extractor(videos)
    assert extractor.num_features == 512 and features.shape == (2, 512)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(extractor.preprocess(videos))
    torch.testing.assert_close(features, expected)
    assert not extractor.comparable and "not the paper's I3D" in extractor.reason
    assert len(extractor.identity()["sha256"]) == 64


def test_torchvision_classifier_rejects_foreign_weights_and_labels_random_init(tmp_path):
    path = write_state_dict({"conv.weight": torch.zeros(2, 2)}, tmp_path / "wrong.safetensors")
    with pytest.raises(UserError, match="does not fit torchvision mc3_18"):
        TorchvisionVideoClassifier("mc3_18", weights=path)
    with pytest.raises(UserError, match="unknown torchvision video architecture"):
        TorchvisionVideoClassifier("resnet50")
    random_init = TorchvisionVideoClassifier("mc3_18", resize_size=(32, 32), crop_size=(32, 32), seed=3)
    assert random_init.reason == "random-init extractor" and random_init.identity()["random_init_seed"] == 3


def test_random_extractor_is_fixed_by_its_seed():
    videos = random_videos(3)
    a, b, c = RandomVideoFeatures(seed=5), RandomVideoFeatures(seed=5), RandomVideoFeatures(seed=6)
    torch.testing.assert_close(a(videos), b(videos))
    assert not torch.allclose(a(videos), c(videos))
    assert a(videos).shape == (3, 64)
    assert not a.comparable and a.reason == "random-init extractor"
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training


def test_build_extractor_from_config(tiny_i3d_path):
    assert isinstance(build_extractor({"kind": "random", "num_features": 8}), RandomVideoFeatures)
    i3d = build_extractor({"kind": "i3d_torchscript", "path": str(tiny_i3d_path), "num_features": 10})
    assert isinstance(i3d, I3DTorchscript)
    with pytest.raises(UserError, match="unknown feature extractor kind"):
        build_extractor({"kind": "videomae"})
    with pytest.raises(UserError, match="has no setting"):
        build_extractor({"kind": "random", "weights": "x"})

"""Multi-view metrics (the paper's Table 3): PSNR, LPIPS and CLIP-S between corresponding ground-truth and
generated views of 21-view orbits.

LPIPS is built here (torchvision AlexNet or VGG16 trunk + the LPIPS linear heads), so both weight files are
read from local paths; torchmetrics' version would download its trunk. CLIP-S is the image-to-image cosine
of open_clip image embeddings (not text-to-image), with the tower loaded from a local file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from ..errors import UserError
from .extractors import RANDOM_INIT_REASON, file_sha256

NUM_VIEWS = 21
PSNR_MSE_FLOOR = 1e-10  # identical images: PSNR capped at 100 dB instead of infinity
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] or float in [-1, 1] -> float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got {images.dtype}")
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1] (N, 3, H, W): 10 log10(1 / MSE)."""
    mse = (prediction - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_MSE_FLOOR))


class LPIPS(nn.Module):
    """Learned perceptual distance (Zhang et al. 2018) on a frozen torchvision trunk.

    d(x, y) = sum_l mean_hw( w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2 ), features f_l taken after five
    ReLUs, each unit-normalised over channels, with inputs in [-1, 1] first shifted and scaled per channel.
    `backbone_weights` is a torchvision state dict of the network (its `features.*` tensors are used);
    `head_weights` the LPIPS linear heads (`lin{l}.model.1.weight`, shape (1, C_l, 1, 1)).
    """

    TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
    MIN_SIZE = {"alex": 31, "vgg": 16}  # smaller images pool away to nothing before the last tap
    CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)
    EPS = 1e-10

    def __init__(self, net: str, backbone_weights: str | Path, head_weights: str | Path):
        super().__init__()
        import torchvision

        from ..models.state_dict_io import read_state_dict

        if net not in self.TAPS:
            raise UserError(f"unknown LPIPS network '{net}'; choose one of {', '.join(self.TAPS)}")
        self.net = net
        self.backbone_weights, self.head_weights = Path(backbone_weights).expanduser(), Path(head_weights).expanduser()
        for key, path in (("backbone_weights", self.backbone_weights), ("head_weights", self.head_weights)):
            if not path.is_file():
                raise UserError(f"LPIPS {key.replace('_', ' ')} not found: {path}; set multiview.lpips.{key} to a "
                                "local file")
        with torch.device("meta"):
            trunk = (torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()).features
        trunk = trunk.to_empty(device="cpu")
        state = {k.removeprefix("features."): v for k, v in read_state_dict(self.backbone_weights).items()
                 if k.startswith("features.")}
        self._load(trunk, state, self.backbone_weights, f"torchvision {net} features")
        taps = (0, *self.TAPS[net])
        self.slices = nn.ModuleList(trunk[start:end] for start, end in zip(taps[:-1], taps[1:]))
        for module in self.slices.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS[net])
        heads = read_state_dict(self.head_weights)
        renamed = {}
        for key, value in heads.items():
            layer, _, rest = key.partition(".model.1.")
            if layer.startswith("lin") and rest == "weight":
                renamed[f"{layer.removeprefix('lin')}.weight"] = value
        self._load(self.heads, renamed, self.head_weights, f"LPIPS {net} linear heads (lin0..lin4.model.1.weight)")
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _load(module: nn.Module, state: dict, path: Path, what: str) -> None:
        expected = module.state_dict()
        missing = sorted(set(expected) - set(state))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or wrong:
            raise UserError(f"{path} does not hold {what}: missing {missing[:3]}, wrong shapes {wrong[:3]}")
        module.load_state_dict({k: state[k] for k in expected})

    def identity(self) -> dict:
        return {"net": self.net, "backbone_sha256": file_sha256(self.backbone_weights),
                "heads_sha256": file_sha256(self.head_weights)}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances (N,) between images (N, 3, H, W) in [-1, 1]."""
        if min(x.shape[-2:]) < self.MIN_SIZE[self.net]:
            raise UserError(f"LPIPS ({self.net}) needs images of at least {self.MIN_SIZE[self.net]} pixels a side, "
                            f"got {x.shape[-2]}x{x.shape[-1]}; raise multiview.size")
        a, b = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for stage, head in zip(self.slices, self.heads):
            a, b = stage(a), stage(b)
            na = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + self.EPS)
            nb = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + self.EPS)
            total = total + head((na - nb).pow(2)).mean(dim=(1, 2, 3))
        return total


class CLIPImageSimilarity(nn.Module):
    """CLIP-S: cosine similarity of open_clip image embeddings of two images (image-to-image)."""

    def __init__(self, model: str | Mapping = "ViT-H-14", weights: str | Path | None = None):
        super().__init__()
        from ..models.conditioners import CLIPImageEmbedder

        self.weights = Path(weights).expanduser() if weights is not None else None
        if self.weights is not None and not self.weights.is_file():
            raise UserError(f"CLIP weights not found: {self.weights}; set multiview.clip.weights to a local open_clip "
                            "file")
        self.model_name = model if isinstance(model, str) else "config"
        self.embedder = CLIPImageEmbedder(model, weights=self.weights)
        self.requires_grad_(False)
        self.eval()

    def identity(self) -> dict:
        weights = {"sha256": file_sha256(self.weights)} if self.weights else {"random_init": True}
        return {"model": self.model_name, **weights}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cosine similarities (N,) between images (N, 3, H, W) in [-1, 1]."""
        ex, ey = self.embedder(x)[:, 0], self.embedder(y)[:, 0]
        return F.cosine_similarity(ex.float(), ey.float(), dim=-1)


class MultiViewMetrics(Metric):
    """PSNR, LPIPS and CLIP-S over orbits: `update(generated, ground_truth)` with (B, V, 3, H, W) uint8 or float
    in [-1, 1] and V = `num_views`. Each score is averaged over the views of an object, then over objects;
    per-object scores are kept (and gathered across processes) for the results table.
    """

    higher_is_better = None
    is_differentiable = False
    full_state_update = False
    SCORES = ("psnr", "lpips", "clip_s")

    def __init__(self, lpips: LPIPS | None = None, clip: CLIPImageSimilarity | None = None,
                 num_views: int = NUM_VIEWS, **kwargs):
        super().__init__(**kwargs)
        self.lpips_net, self.clip_net, self.num_views = lpips, clip, num_views
        for score in self.SCORES:
            self.add_state(score, [], dist_reduce_fx="cat")

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor) -> None:
        if generated.shape != ground_truth.shape or generated.ndim != 5 or generated.shape[2] != 3:
            raise ValueError(f"generated and ground-truth orbits must both be (B, V, 3, H, W), got "
                             f"{tuple(generated.shape)} and {tuple(ground_truth.shape)}")
        objects, views = generated.shape[:2]
        if views != self.num_views:
            raise ValueError(f"orbits have {views} views, the protocol needs {self.num_views}")
        unit_gen, unit_gt = to_unit_range(generated.flatten(0, 1)), to_unit_range(ground_truth.flatten(0, 1))
        per_view = {"psnr": psnr(unit_gen, unit_gt)}
        signed_gen, signed_gt = unit_gen * 2.0 - 1.0, unit_gt * 2.0 - 1.0
        if self.lpips_net is not None:
            per_view["lpips"] = self.lpips_net(signed_gen, signed_gt)
        if self.clip_net is not None:
            per_view["clip_s"] = self.clip_net(signed_gen, signed_gt)
        for score, values in per_view.items():
            getattr(self, score).append(values.double().view(objects, views).mean(dim=1))

    def per_object(self) -> dict[str, list[float]]:
        scores = {}
        for score in self.SCORES:
            values = getattr(self, score)
            if isinstance(values, list):
                values = torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)
            scores[score] = values.tolist()
        return scores

    def compute(self) -> dict[str, float | None]:
        per_object = self.per_object()
        if not per_object["psnr"]:
            raise ValueError("no orbits given: call update(generated, ground_truth) first")
        return {score: float(np.mean(v)) if v else None for score, v in per_object.items()}

    def labels(self) -> dict:
        """Which networks scored LPIPS and CLIP-S, and whether the numbers can stand beside the paper's."""
        reasons = [f"{name} switched off (no weights given)" for name, net in (("LPIPS", self.lpips_net),
                                                                            ("CLIP-S", self.clip_net)) if net is None]
        if self.clip_net is not None and self.clip_net.weights is None:
            reasons.append(f"CLIP-S: {RANDOM_INIT_REASON}")
        return {"lpips_network": self.lpips_net.identity() if self.lpips_net is not None else None,
                "clip_network": self.clip_net.identity() if self.clip_net is not None else None,
                "comparable": not reasons, "reason": "; ".join(reasons) or None}


def read_views(files: list[Path], background: int = 255) -> torch.Tensor:
    """Image files as uint8 (V, 3, H, W), all of one size; transparent pixels are composited onto a grey level
    `background` (white by default, as object renders are usually shown)."""
    from PIL import Image

    views = []
    for path in files:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + background * (1.0 - alpha)
        views.append(torch.from_numpy(np.round(rgb).astype(np.uint8)).permute(2, 0, 1))
    sizes = sorted({tuple(v.shape[1:]) for v in views})
    if len(sizes) != 1:
        raise UserError(f"{Path(files[0]).parent}: views differ in size ({sizes}); render every view at one size")
    return torch.stack(views)


def read_orbit(folder: str | Path, num_views: int = NUM_VIEWS, background: int = 255) -> torch.Tensor:
    """The views of an orbit folder without a camera file: exactly `num_views` images, in name order (= azimuth
    order), as uint8 (V, 3, H, W)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if len(files) != num_views:
        raise UserError(f"{folder}: expected {num_views} view images ({'/'.join(IMAGE_SUFFIXES)}), found {len(files)}")
    return read_views(files, background)

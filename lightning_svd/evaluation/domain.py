"""A small video network trained on the synthetic corpus' ground truth: domain-FVD features and a degradation detector.

The tiny profile's proxies draw small scenes of flat colour and shapes that I3D never saw and a random network
cannot tell apart. This network learns the corpus' own factors from its sidecars (planted degradation, background
colour, shape colour and kind), never from a curation score, so its pooled features give a "domain FVD" and its
degradation head judges how many samples look degraded independently of the score that filtered the arms.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_modules.clips import resize_and_crop

from ..cache import build_once
from ..synthetic import load_truth
from ..synthetic.scenes import COLORS, DEGRADATIONS, SHAPES
from ..video import read_frames
from .extractors import VideoFeatureExtractor, check_videos
from .fvd import to_uint8_videos

HEADS = {
    "degradation": ("clean", *DEGRADATIONS),
    "background_color": tuple(COLORS),
    "shape_color": tuple(COLORS),
    "shape_kind": SHAPES,
}
REASON = "features of a small network trained on the synthetic corpus (domain FVD), not the paper's I3D"
WEIGHTS_FILE, REPORT_FILE = "domain_net.pt", "report.json"


@dataclass
class DomainExamples:
    """Labelled windows: `videos` (N, T, H, W, 3) uint8, `labels` head -> (N,) int64, `groups` (N,) source files."""

    videos: np.ndarray
    labels: dict[str, np.ndarray]
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.videos)


@dataclass
class DomainReport:
    """How well the network learnt the corpus, measured on windows of videos it never trained on."""

    heldout_accuracy: dict[str, float]
    chance: dict[str, float]                                # the held-out share of each head's majority class
    degradation_class_accuracy: dict[str, float | None]     # recall per class; None where held out has none
    num_train: int
    num_heldout: int
    steps: int
    batch_size: int
    lr: float
    seed: int
    seconds: float


def scene_windows(truth: dict, span: int, max_windows: int) -> Iterator[tuple[int, dict]]:
    """(first frame, scene) of up to `max_windows` evenly spaced, non-overlapping windows of `span` frames per scene,
    each inside its scene's content and clear of every transition, so a window shows one scene's labels only."""
    transitions = [(cut["start_frame"], cut["end_frame"]) for cut in truth["cuts"]]
    for scene in truth["scenes"]:
        start, end = scene["start_frame"], scene["end_frame"]
        count = min(max_windows, (end - start) // span)
        for first in np.linspace(start, end - span, max(count, 0)).round().astype(int):
            if not any(first < stop and begin < first + span for begin, stop in transitions):
                yield int(first), scene


def examples_from_videos(video_paths: Iterable[str | Path], num_frames: int, height: int, width: int,
                         stride: int = 1, max_windows_per_scene: int = 8) -> DomainExamples:
    """Windows of `num_frames` frames every `stride` frames (the DataModule's stride) from corpus videos, resized and
    quantised exactly as the training clips and the ablation's real clips are, labelled from their sidecars."""
    span = (num_frames - 1) * stride + 1
    videos, groups, labels = [], [], {head: [] for head in HEADS}
    for path in video_paths:
        windows = list(scene_windows(load_truth(path), span, max_windows_per_scene))
        needed = sorted({f for first, _ in windows for f in range(first, first + span, stride)})
        if not needed:
            continue
        frames = to_uint8_videos(resize_and_crop(read_frames(path)[needed], height, width)[None])[0]
        position = {frame: i for i, frame in enumerate(needed)}
        for first, scene in windows:
            videos.append(frames[[position[f] for f in range(first, first + span, stride)]].permute(0, 2, 3, 1))
            groups.append(Path(path).name)
            for head, classes in HEADS.items():
                labels[head].append(classes.index(scene[head] or "clean"))  # a null degradation is clean
    if not videos:
        raise ValueError(f"no scene of these videos holds {span} frames")
    return DomainExamples(torch.stack(videos).numpy(), {h: np.array(v, dtype=np.int64) for h, v in labels.items()},
                          np.array(groups))


class Branch(nn.Module):
    """Per-frame 2D convolutions on 16x16 space-to-depth input (every pixel kept), a last 3D layer mixing neighbouring
    frames, mean and max pooled over time and space, then layer-normalised: the pooled activations of faint grain
    differ by hundredths, too little for the heads to learn from in a few hundred steps without the normalisation."""

    def __init__(self, in_channels: int, channels: int, features: int):
        super().__init__()
        self.frames = nn.Sequential(
            nn.Conv2d(4 * in_channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.clip = nn.Conv3d(2 * channels, features // 2, 3, stride=(1, 2, 2), padding=1)
        self.norm = nn.LayerNorm(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, features)."""
        batch, frames = x.shape[:2]
        x = self.frames(F.pixel_unshuffle(x.flatten(0, 1), 2)).unflatten(0, (batch, frames)).transpose(1, 2)
        x = F.relu(self.clip(x)).flatten(2)
        return self.norm(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1))


class DomainNet(VideoFeatureExtractor):
    """Two branches whose features are concatenated: a quality branch that sees the frames and their pixel-scale
    detail (frame minus its 3x3 local mean, where grain and blur live) and feeds the degradation head, and a content
    branch that feeds the colour and shape heads. Training shows the quality branch colour-permuted and inverted
    frames, so the detector cannot recognise a degraded training scene by its colours."""

    DETAIL_GAIN = 15.0  # the residual is a few hundredths in [-1, 1] units: scaled to the colours' range

    def __init__(self, height: int = 32, width: int = 32, num_features: int = 64, channels: int = 16):
        super().__init__()
        if num_features % 4 or height % 2 or width % 2:
            raise ValueError(f"num_features must be a multiple of 4 and the frame size even, got {num_features} "
                             f"features at {height}x{width}")
        self.height, self.width, self.num_features, self.channels = height, width, num_features, channels
        self.quality = Branch(6, channels, num_features // 2)
        self.content = Branch(3, channels, num_features // 2)
        self.heads = nn.ModuleDict({head: nn.Linear(num_features // 2, len(classes))
                                    for head, classes in HEADS.items()})
        self.register_buffer("degradation_prior", torch.zeros(len(HEADS["degradation"])))
        self.comparable, self.reason = False, REASON

    def settings(self) -> dict:
        return {"height": self.height, "width": self.width, "num_features": self.num_features,
                "channels": self.channels}

    def identity(self) -> dict:
        digest = hashlib.sha256()
        for name, tensor in self.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return {"kind": "domain", "weights_sha256": digest.hexdigest(), **self.settings()}

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        height, width = check_videos(videos).shape[-2:]
        if (height, width) != (self.height, self.width):
            raise ValueError(f"the domain network was trained on {self.height}x{self.width} frames, got "
                             f"{height}x{width}: resizing would change the blur and grain it detects")
        x = videos.float() / 127.5 - 1.0
        return torch.cat([self.quality_features(x), self.content(x)], dim=1)

    def quality_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> (B, num_features / 2), the degradation head's input."""
        frames = x.flatten(0, 1)
        detail = frames - F.avg_pool2d(frames, 3, stride=1, padding=1, count_include_pad=False)
        return self.quality(torch.cat([frames, self.DETAIL_GAIN * detail], dim=1).unflatten(0, x.shape[:2]))

    def logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per head, from the features `forward` returns: the quality half for degradation, the content half else."""
        quality, content = features.chunk(2, dim=1)
        logits = {head: layer(quality if head == "degradation" else content) for head, layer in self.heads.items()}
        logits["degradation"] = logits["degradation"] + self.degradation_prior
        return logits

    @torch.no_grad()
    def predict(self, videos: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Class probabilities per head for (B, T, H, W, 3) uint8 videos, the layout of samples."""
        clips = torch.from_numpy(np.ascontiguousarray(videos)).permute(0, 1, 4, 2, 3)
        parts = [self.logits(self(clips[i : i + batch_size])) for i in range(0, len(clips), batch_size)]
        return {head: torch.cat([p[head] for p in parts]).softmax(dim=1).numpy() for head in HEADS}

    def degraded_probability(self, videos: np.ndarray) -> np.ndarray:
        """(B,): the probability that each video shows a planted degradation, 1 - P(clean)."""
        return 1.0 - self.predict(videos)["degradation"][:, 0]


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Flips, frame-order reversal and small integer shifts: they keep every pixel's sharpness and grain, so the
    network cannot learn a degradation from the augmentation itself (no noise, blur or colour jitter)."""
    batch = len(x)
    flip = torch.rand(batch, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    reverse = torch.rand(batch, generator=generator) < 0.5
    x = torch.where(reverse[:, None, None, None, None], x.flip(1), x)
    height, width = x.shape[-2:]
    padded = F.pad(x.flatten(0, 1), (max_shift,) * 4, mode="replicate").unflatten(0, x.shape[:2])
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator).tolist()
    return torch.stack([clip[..., dy : dy + height, dx : dx + width] for clip, (dy, dx) in zip(padded, offsets)])


def recolour(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Permute each clip's colour channels and invert half of the clips: blur, grain and contrast survive, the
    scene's colours do not (the corpus has too few degraded scenes to learn them apart from their colours)."""
    batch = len(x)
    order = torch.rand(batch, 3, generator=generator).argsort(dim=1)
    x = x.gather(2, order[:, None, :, None, None].expand_as(x))
    return x * torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)[:, None, None, None, None]


def heldout_report(net: DomainNet, heldout: DomainExamples) -> dict:
    """Accuracy per head, the majority-class chance per head and the recall of each degradation class."""
    predicted = {head: p.argmax(axis=1) for head, p in net.predict(heldout.videos).items()}
    accuracy = {head: round(float((predicted[head] == heldout.labels[head]).mean()), 4) for head in HEADS}
    chance = {head: round(float(np.bincount(heldout.labels[head]).max() / len(heldout)), 4) for head in HEADS}
    truth, guess = heldout.labels["degradation"], predicted["degradation"]
    per_class = {name: round(float((guess[truth == i] == i).mean()), 4) if (truth == i).any() else None
                 for i, name in enumerate(HEADS["degradation"])}
    return {"heldout_accuracy": accuracy, "chance": chance, "degradation_class_accuracy": per_class}


def train_domain_net(train: DomainExamples, heldout: DomainExamples, *, seed: int = 0, steps: int = 300,
                     batch_size: int = 32, lr: float = 3e-3, threads: int | None = None,
                     **settings) -> tuple[DomainNet, DomainReport]:
    """Train every head with the sum of their cross-entropies (AdamW, cosine decay), deterministic for a seed on a
    given thread count; `threads` sets torch's thread count for the training only; `settings` go to `DomainNet`.

    Windows are drawn with weights 1 / sqrt(their degradation class' count): each planted degradation is about a
    tenth of the windows, and drawn at that rate the detector tends to stay on always answering clean. The
    degradation logits then get the log-ratio of the true to the sampled class shares (`degradation_prior`), so
    probabilities, and the share of samples judged degraded, follow the corpus' own shares."""
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = DomainNet(height=train.videos.shape[2], width=train.videos.shape[3], **settings)
        generator = torch.Generator().manual_seed(seed)
        videos = torch.from_numpy(train.videos).permute(0, 1, 4, 2, 3)
        labels = {head: torch.from_numpy(values) for head, values in train.labels.items()}
        degradation = train.labels["degradation"]
        counts = np.bincount(degradation, minlength=len(HEADS["degradation"]))
        weights = torch.from_numpy(counts[degradation] ** -0.5)
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            index = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
            x = augment(videos[index].float() / 127.5 - 1.0, generator)
            features = torch.cat([net.quality_features(recolour(x, generator)), net.content(x)], dim=1)
            logits = net.logits(features)
            loss = sum(F.cross_entropy(logits[head], labels[head][index]) for head in HEADS)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        net.degradation_prior.copy_(torch.from_numpy(0.5 * np.log(np.maximum(counts, 1))))
        net.freeze()
        measured = heldout_report(net, heldout)
    finally:
        torch.set_num_threads(threads_before)
    return net, DomainReport(**measured, num_train=len(train), num_heldout=len(heldout), steps=steps,
                             batch_size=batch_size, lr=lr, seed=seed,
                             seconds=round(time.perf_counter() - started, 2))


def save_domain_net(folder: str | Path, net: DomainNet, report: DomainReport) -> None:
    """The weights with the settings that rebuild the network, and the report as JSON beside them."""
    folder = Path(folder)
    torch.save({"settings": net.settings(), "state_dict": net.state_dict()}, folder / WEIGHTS_FILE)
    (folder / REPORT_FILE).write_text(json.dumps(asdict(report), indent=1))


def load_domain_net(folder: str | Path) -> tuple[DomainNet, DomainReport]:
    folder = Path(folder)
    saved = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    net = DomainNet(**saved["settings"])
    net.load_state_dict(saved["state_dict"])
    net.freeze()
    return net, DomainReport(**json.loads((folder / REPORT_FILE).read_text()))


def cached_domain_net(cache_dir: str | Path, key: str,
                      build: Callable[[], tuple[DomainNet, DomainReport]]) -> tuple[DomainNet, DomainReport]:
    """The network cached under `<cache_dir>/domain_net/<key>`, trained by `build` on the first call only; `key` is
    the caller's hash of everything that decides the training (corpus, held-out split, settings). Every call loads
    from disk, so the first run's network is the very one later runs reuse."""
    folder = build_once(Path(cache_dir) / "domain_net", key, lambda out: save_domain_net(out, *build()))
    return load_domain_net(folder)

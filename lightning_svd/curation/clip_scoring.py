"""CLIP scores through open_clip (SVD §3.1, App. C): caption similarity and the LAION aesthetic head.

One CLIP model embeds each clip's first, middle and last frames once; the embeddings feed both the caption
similarity (cosine between image and caption embeddings, mean over the three frames, for every caption the clip has)
and, when chosen, the LAION aesthetic head. Weights load from local files only: `weights=None` builds the model with
random weights (seeded, so every worker and rerun scores alike), and `describe()` (stored in the table beside each
score) says so.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from torch import nn

from .local_models import seeded_init


class ClipEncoder:
    """An open_clip model and its tokenizer; `config_file` registers a custom model config (JSON) first."""

    def __init__(self, model: str, weights: str | None = None, device: str = "cpu", config_file: str | None = None):
        if config_file:
            open_clip.add_model_config(config_file)
        if weights and not Path(weights).is_file():
            raise FileNotFoundError(f"curation.clip.weights: no file at {weights}")
        self.model_name, self.weights, self.device = model, weights, device
        with seeded_init():
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model, pretrained=weights or None, device=device
            )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)

    @property
    def random_weights(self) -> bool:
        return not self.weights

    def describe(self) -> str:
        return f"open_clip:{self.model_name} weights={self.weights or 'random (scores are not meaningful)'}"

    @torch.inference_mode()
    def encode_images(self, frames: list[np.ndarray]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(Image.fromarray(frame)) for frame in frames]).to(self.device)
        return self.model.encode_image(batch, normalize=True).float().cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True).float().cpu()


def caption_similarity(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> list[float]:
    """Cosine similarity of each clip's frames with its caption, mean over frames.

    `image_embeddings` is `(clips, frames, dim)`, `text_embeddings` `(clips, dim)`, both L2-normalised."""
    return torch.einsum("cfd,cd->cf", image_embeddings, text_embeddings).mean(dim=1).tolist()


def caption_scores(image_embeddings: torch.Tensor, captions: list[dict[str, str]],
                   encode_texts: Callable[[list[str]], torch.Tensor]) -> list[dict[str, float]]:
    """The similarity of every caption of every clip to that clip's frames, `{caption column: score}` per clip.

    `captions[i]` holds clip i's captions by column; all texts are embedded in one batch."""
    pairs = [(i, column) for i, texts in enumerate(captions) for column in texts]
    scores: list[dict[str, float]] = [{} for _ in captions]
    if pairs:
        texts = encode_texts([captions[i][column] for i, column in pairs])
        values = caption_similarity(image_embeddings[[i for i, _ in pairs]], texts)
        for (i, column), value in zip(pairs, values, strict=True):
            scores[i][column] = value
    return scores


class AestheticMlp(nn.Module):
    """The improved-aesthetic-predictor head: 768-1024-128-64-16-1 with dropouts and no activations, the layout of
    the released `sac+logos+ava1-l14-linearMSE.pth` (keys `layers.0/2/4/6/7`)."""

    def __init__(self, in_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


class LaionAesthetic:
    """LAION aesthetic predictor on L2-normalised CLIP image embeddings, mean over a clip's key frames.

    `head="mlp"` is the improved predictor, `head="linear"` the older single linear layer (`sa_0_4_vit_*`)."""

    def __init__(self, embed_dim: int, weights: str | None = None, head: str = "mlp"):
        if head not in ("mlp", "linear"):
            raise ValueError(f"curation.aesthetic.laion.head must be mlp or linear, got {head!r}")
        self.weights, self.head = weights, head
        with seeded_init():
            self.module = AestheticMlp(embed_dim) if head == "mlp" else nn.Linear(embed_dim, 1)
        if weights:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"curation.aesthetic.laion.weights: no file at {weights}")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            try:
                self.module.load_state_dict(state.get("state_dict", state))
            except RuntimeError as err:
                raise ValueError(
                    f"curation.aesthetic.laion.weights: {weights} does not fit a {head} head on {embed_dim}-d "
                    f"CLIP embeddings ({str(err).splitlines()[0]})"
                ) from err
        self.module.eval()

    def describe(self) -> str:
        return f"laion-{self.head} weights={self.weights or 'random (scores are not meaningful)'}"

    @torch.inference_mode()
    def scores(self, image_embeddings: torch.Tensor) -> list[float]:
        """`image_embeddings` is `(clips, frames, dim)`; returns one score per clip."""
        return self.module(image_embeddings.float()).squeeze(-1).mean(dim=1).tolist()

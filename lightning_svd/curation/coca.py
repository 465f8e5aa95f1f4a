"""CoCa captions through open_clip (SVD App. C: CoCa on each clip's middle frame), column `caption_coca`.

Decoding is greedy and written here, so it needs no `transformers` (open_clip's own `generate` does). CoCa needs
real weights (for example `coca_ViT-L-14` with the LAION `mscoco_finetuned_laion2b_s13b_b90k` checkpoint, as a
local file): a random CoCa writes nonsense that nothing downstream could tell from a caption, so it is refused.
"""

from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image


class CocaCaptioner:
    column = "caption_coca"

    def __init__(self, model: str, weights: str | None, device: str = "cpu", config_file: str | None = None,
                 max_tokens: int = 30):
        if not weights:
            raise ValueError("curation.captions.coca.weights: CoCa needs a local checkpoint (random weights would "
                             "write nonsense captions); set it or turn curation.captions.coca.enabled off")
        if not Path(weights).is_file():
            raise FileNotFoundError(f"curation.captions.coca.weights: no file at {weights}")
        if config_file:
            open_clip.add_model_config(config_file)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=weights,
                                                                               device=device)
        if not hasattr(self.model, "text_decoder"):
            raise ValueError(f"curation.captions.coca.model: {model} is not a CoCa model (e.g. coca_ViT-L-14)")
        self.model.eval()
        tokenizer = open_clip.get_tokenizer(model)
        self.start, self.end = tokenizer.sot_token_id, tokenizer.eot_token_id
        self.device, self.max_tokens = device, max_tokens
        self.model_name, self.weights = model, weights

    def describe(self) -> str:
        return f"open_clip:{self.model_name} (CoCa, middle frame) weights={self.weights}"

    @torch.inference_mode()
    def captions(self, frames: list[np.ndarray]) -> list[str]:
        images = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.device)
        latent, embeddings = self.model._encode_image(images)
        tokens = torch.full((len(frames), 1), self.start, dtype=torch.long, device=self.device)
        finished = torch.zeros(len(frames), dtype=torch.bool, device=self.device)
        for _ in range(self.max_tokens):
            logits = self.model(images, tokens, image_latent=latent, image_embs=embeddings,
                                output_labels=False)["logits"][:, -1]
            following = torch.where(finished, torch.full_like(finished, self.end, dtype=torch.long),
                                    logits.argmax(dim=-1))
            tokens = torch.cat([tokens, following[:, None]], dim=1)
            finished |= following == self.end
            if finished.all():
                break
        return [self._text(row) for row in tokens.cpu().tolist()]

    def _text(self, tokens: list[int]) -> str:
        body = tokens[1:tokens.index(self.end)] if self.end in tokens else tokens[1:]
        return open_clip.decode(torch.tensor(body)).strip()

"""Cost of the tiny profile's text conditioning per training batch with the frozen tower's caption cache, against
encoding every caption afresh (the tower made trainable, which bypasses the cache), in one run.

Batches of the ablation corpus' captions drawn as the data modules draw clips (the arms' 8 and the image model's 32 per
batch, with repeats), alternating the two ways over several rounds; the fastest round counts; one thread.

    PYTHONPATH=. python benchmarks/text_feature_cache.py [--batches 100] [--rounds 5]

Never run as a test.
"""

import argparse
import json
import time

import numpy as np
import torch

from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.config import load_config
from lightning_svd.quiet import silence_third_party
from lightning_svd.stages.components import build_text_encoder
from lightning_svd.synthetic.scenes import caption_for, random_scene


def corpus_captions(count: int) -> list[str]:
    """Captions in the ablation corpus' template, as many distinct scenes as a tiny arm trains on."""
    rng = np.random.default_rng(0)
    return [caption_for(random_scene(rng, static=i % 4 == 0, text=i % 3 == 0, degraded=False)) for i in range(count)]


def seconds(encoder, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            encoder(batch, num_frames=4)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    silence_third_party()
    torch.set_num_threads(1)
    recipe = proxy_recipe(load_config("ablation_aesthetic", "tiny", check_paths=False))
    encoder = build_text_encoder(recipe.train.open_clip, recipe.train.text.layer)
    captions = corpus_captions(74)
    rng = np.random.default_rng(1)
    image_batch = int(proxy_recipe(load_config("ablation_aesthetic", "tiny", check_paths=False),
                                   image=True).train.data.batch_size)
    for batch_size in (int(recipe.train.data.batch_size), image_batch):
        batches = [[captions[i] for i in rng.integers(0, len(captions), batch_size)] for _ in range(args.batches)]
        best = {"encoded every batch": float("inf"), "cached": float("inf")}
        for _ in range(args.rounds):
            encoder.requires_grad_(True)
            best["encoded every batch"] = min(best["encoded every batch"], seconds(encoder, batches))
            encoder.requires_grad_(False).feature_cache.clear()
            best["cached"] = min(best["cached"], seconds(encoder, batches))
        base = best["encoded every batch"]
        for name, total in best.items():
            print(json.dumps({"batch": batch_size, "way": name, "ms_per_batch": round(1000 * total / args.batches, 3),
                              "ratio": round(total / base, 3)}))


if __name__ == "__main__":
    main()

"""Can the tiny profile's random-weight text tower tell a caption's shape colour from its background colour?

Encodes the synthetic corpus' captions (`caption_for`: "a teal textured background behind three yellow circles
moving steadily as the camera pans left"), or with `--background-last` the same words in the order the corpus used
before generator 4 ("three yellow circles moving steadily as the camera pans left over a teal textured background"),
for every ordered pair of palette colours with the frozen tiny tower, then trains a small attention probe (learned
queries over the token features, as a UNet's cross-attention reads them) to name the shape's colour, and another the
background's; prints each probe's accuracy on captions it never saw. A probe that cannot name the background colour
suggests the proxies' cross-attention cannot either.

    PYTHONPATH=. python benchmarks/text_tower_probe.py [--background-last] [--layer penultimate|last] [--steps 1500]

About a minute on one thread. Never run as a test.
"""

import argparse
import itertools
import random

import torch
from torch import nn

from lightning_svd.stages.components import build_text_encoder
from lightning_svd.synthetic.scenes import COLORS, DIRECTIONS, SHAPES, Scene, Shape, caption_for


def background_last(scene: Scene) -> str:
    """The same words as the corpus' caption, the background named last (the corpus before generator 4)."""
    background, _, rest = caption_for(scene).partition(" behind ")
    return f"{rest} over {background}"


def captions(rng: random.Random, template, per_pair: int = 3) -> list[tuple[str, int, int]]:
    """(caption, shape colour index, background colour index) for every ordered pair of palette colours."""
    colours = list(COLORS)
    rows = []
    for shape_colour, background in itertools.permutations(colours, 2):
        for _ in range(per_pair):
            shape = Shape(rng.choice(SHAPES), shape_colour, 1.0, 0.0, 0.0, 0.0)
            scene = Scene(background, 0, [shape] * rng.randint(1, 3), rng.choice([0.5, 1.5, 2.5]),
                          rng.choice(list(DIRECTIONS)))
            rows.append((template(scene), colours.index(shape_colour), colours.index(background)))
    rng.shuffle(rows)
    return rows


class AttentionProbe(nn.Module):
    """Learned queries attend over the token features; their readouts name a colour."""

    def __init__(self, width: int, classes: int, queries: int = 4):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, width) * 0.1)
        self.key, self.value = nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(queries * width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = torch.einsum("qd,bld->bql", self.queries, self.key(tokens)) / tokens.shape[-1] ** 0.5
        read = torch.einsum("bql,bld->bqd", weights.softmax(-1), self.value(tokens))
        return self.head(read.flatten(1))


def held_out_accuracy(tokens: torch.Tensor, labels: torch.Tensor, split: int, steps: int) -> float:
    probe = AttentionProbe(tokens.shape[-1], len(COLORS))
    optimizer = torch.optim.Adam(probe.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(0, split, (64,))
        loss = nn.functional.cross_entropy(probe(tokens[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (probe(tokens[split:]).argmax(-1) == labels[split:]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="penultimate", choices=["penultimate", "last"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--background-last", action="store_true", help="name the background last")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = captions(random.Random(0), background_last if args.background_last else caption_for)
    print(f"for example: {rows[0][0]!r}")
    encoder = build_text_encoder({"model": "tiny", "weights": None}, args.layer).eval()
    with torch.no_grad():
        tokens = torch.cat([encoder([row[0] for row in rows[i:i + 256]]) for i in range(0, len(rows), 256)])
    split = int(0.8 * len(rows))
    for name, column in (("shape colour", 1), ("background colour", 2)):
        labels = torch.tensor([row[column] for row in rows])
        accuracy = held_out_accuracy(tokens, labels, split, args.steps)
        template = "background last" if args.background_last else "the corpus' captions"
        print(f"{template}, {args.layer} layer, {name}: held-out accuracy {accuracy:.2f} "
              f"(chance {1 / len(COLORS):.2f}) over {len(rows) - split} captions", flush=True)


if __name__ == "__main__":
    main()

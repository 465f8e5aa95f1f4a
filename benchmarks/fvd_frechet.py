"""Cost and agreement of our Fréchet distance (symmetric eigh form) against scipy's sqrtm form.

For each feature dimension: random features of N samples per side, then the time of both forms and their
relative difference. Also the feature throughput of the FVD metric with a given extractor on random videos.

    PYTHONPATH=. python benchmarks/fvd_frechet.py                         # d = 400 (I3D) and 2048, N = 2048
    PYTHONPATH=. python benchmarks/fvd_frechet.py --dims 400 --samples 13320 --videos 64 --device cuda

Never run as a test.
"""

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from lightning_svd.evaluation import FeatureStatistics, frechet_distance
from lightning_svd.evaluation.extractors import RandomVideoFeatures
from lightning_svd.evaluation.fvd import FrechetVideoDistance


def sqrtm_frechet(mu1, sigma1, mu2, sigma2) -> float:
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    root = root[0] if isinstance(root, tuple) else root
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2.0 * root.real))


def timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def compare_forms(dim: int, samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = FeatureStatistics(dim).update(rng.normal(size=(samples, dim)) @ mixing)
    fake = FeatureStatistics(dim).update(rng.normal(size=(samples, dim)) @ mixing + 0.1)
    args = (real.mean, real.covariance(), fake.mean, fake.covariance())
    ours, ours_s = timed(frechet_distance, *args)
    reference, reference_s = timed(sqrtm_frechet, *args)
    print(f"d={dim:5d} N={samples:6d}  eigh {ours:12.6f} in {ours_s:7.3f} s   sqrtm {reference:12.6f} in "
          f"{reference_s:7.3f} s   relative difference {abs(ours - reference) / abs(reference):.2e}")


def extractor_throughput(videos: int, device: str) -> None:
    metric = FrechetVideoDistance(RandomVideoFeatures()).to(device)
    batch = torch.randint(0, 256, (videos, 16, 3, 240, 320), dtype=torch.uint8, device=device)
    metric.update(batch, real=True)
    start = time.perf_counter()
    metric.update(batch, real=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"random extractor, 16x240x320 clips on {device}: {videos / seconds:.1f} clips/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[400, 2048])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for dim in args.dims:
        compare_forms(dim, args.samples, args.seed)
    extractor_throughput(args.videos, args.device)


if __name__ == "__main__":
    main()

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from evaluation_fakes import random_videos

from lightning_svd.evaluation import FeatureStatistics, frechet_distance
from lightning_svd.evaluation.extractors import I3DTorchscript, RandomVideoFeatures
from lightning_svd.evaluation.fvd import FrechetVideoDistance, FVDProtocol, RealStatisticsCache, to_uint8_videos


def small_extractor() -> RandomVideoFeatures:
    return RandomVideoFeatures(num_features=8, size=16, seed=0, width=4)


def test_fvd_of_a_set_against_itself_is_zero():
    metric = FrechetVideoDistance(small_extractor())
    videos = random_videos(40)
    metric.update(videos, real=True)
    metric.update(videos, real=False)
    assert abs(float(metric.compute())) < 1e-6


def test_fvd_grows_as_one_set_shifts():
    real = random_videos(40, seed=1)
    values = []
    for shift in (0.0, 0.05, 0.15, 0.3):
        metric = FrechetVideoDistance(small_extractor())
        metric.update(real, real=True)
        metric.update(random_videos(40, seed=2, shift=shift), real=False)
        values.append(float(metric.compute()))
    assert values == sorted(values) and values[-1] > 10 * values[0] > 0


def test_fvd_equals_frechet_distance_of_the_features():
    extractor = small_extractor()
    real, fake = random_videos(30, seed=3), random_videos(25, seed=4, shift=0.1)
    metric = FrechetVideoDistance(extractor)
    for chunk in real.split(7):
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    real_features, fake_features = extractor(real).double().numpy(), extractor(fake).double().numpy()
    expected = frechet_distance(real_features.mean(0), np.cov(real_features, rowvar=False, bias=True),
                                fake_features.mean(0), np.cov(fake_features, rowvar=False, bias=True))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-8)
    unbiased = FrechetVideoDistance(extractor, ddof=1)
    unbiased.update(real, real=True)
    unbiased.update(fake, real=False)
    assert float(unbiased.compute()) != pytest.approx(expected, rel=1e-6)


def test_float_videos_are_quantised_like_decoded_frames():
    videos = random_videos(4)
    as_float = videos.float() / 127.5 - 1.0
    assert torch.equal(to_uint8_videos(as_float), videos)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        to_uint8_videos(videos[:, :, :1])


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_result_labels_every_number():
    metric = FrechetVideoDistance(small_extractor())
    metric.update(random_videos(6, seed=1), real=True)
    metric.update(random_videos(5, seed=2), real=False)
    result = metric.result()
    assert result["comparable"] is False and result["reason"] == "random-init extractor"
    assert result["num_real"] == 6 and result["num_fake"] == 5 and result["covariance"] == "biased 1/N"
    assert result["feature_extractor"]["kind"] == "random"
    with pytest.raises(ValueError, match="at least 1 real"):
        FrechetVideoDistance(small_extractor()).compute()


def test_paper_i3d_result_is_comparable(tiny_i3d_path):
    metric = FrechetVideoDistance(I3DTorchscript(tiny_i3d_path, num_features=10))
    metric.update(random_videos(12, seed=1), real=True)
    metric.update(random_videos(12, seed=2), real=False)
    result = metric.result()
    assert result["comparable"] is True and result["reason"] is None and result["fvd"] > 0


def test_reset_keeps_real_features_when_asked():
    keep = FrechetVideoDistance(small_extractor(), reset_real_features=False)
    keep.update(random_videos(10, seed=1), real=True)
    keep.update(random_videos(10, seed=2), real=False)
    first = float(keep.compute())
    keep.reset()
    assert keep.statistics("real").count == 10 and keep.statistics("fake").count == 0
    keep.update(random_videos(10, seed=2), real=False)
    assert float(keep.compute()) == pytest.approx(first, rel=1e-12)
    drop = FrechetVideoDistance(small_extractor())
    drop.update(random_videos(10, seed=1), real=True)
    drop.reset()
    assert drop.statistics("real").count == 0


def protocol(**changes) -> FVDProtocol:
    fields = dict(extractor=small_extractor().identity(), num_frames=6, resolution=(16, 16),
                  preprocessing="none", num_samples=20, real_set="fake-set-v1")
    return FVDProtocol(**{**fields, **changes})


def test_protocol_key_changes_with_every_field():
    base = protocol().key()
    assert protocol().key() == base
    for change in ({"num_frames": 16}, {"resolution": (16, 17)}, {"preprocessing": "crop"}, {"num_samples": 21},
                   {"real_set": "other"}, {"extractor": {**small_extractor().identity(), "seed": 1}}):
        assert protocol(**change).key() != base, change


def test_real_statistics_are_cached_by_protocol(tmp_path):
    cache = RealStatisticsCache(tmp_path)
    real, fake = random_videos(20, seed=1), random_videos(20, seed=2, shift=0.1)
    calls = []

    def batches():
        calls.append(1)
        return real.split(8)

    first = FrechetVideoDistance(small_extractor())
    assert cache.get_or_compute(protocol(), first, batches) is False
    first.update(fake, real=False)
    path = tmp_path / "fvd_stats" / f"{protocol().key()}.npz"
    assert path.is_file()
    stats, metadata = FeatureStatistics.load(path)
    assert stats.count == 20 and metadata["protocol"]["real_set"] == "fake-set-v1"
    second = FrechetVideoDistance(small_extractor())
    assert cache.get_or_compute(protocol(), second, batches) is True
    second.update(fake, real=False)
    assert len(calls) == 1
    assert float(second.compute()) == pytest.approx(float(first.compute()), rel=1e-12)
    assert cache.load(protocol(num_samples=19)) is None
    with pytest.raises(ValueError, match="promises 19"):
        cache.save(protocol(num_samples=19), stats)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str, cached: dict) -> None:
    """One of two gloo processes (forked, so nothing is imported again): half the videos each."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        real, fake = random_videos(24, seed=1), random_videos(20, seed=2, shift=0.1)
        metric = FrechetVideoDistance(small_extractor())
        for chunk in real[rank::world_size].split(5):
            metric.update(chunk, real=True)
        metric.update(fake[rank::world_size], real=False)
        value = float(metric.compute())
        preloaded = FrechetVideoDistance(small_extractor())
        stats = FeatureStatistics(8)
        stats.total, stats.outer, stats.count = (np.array(cached["total"]), np.array(cached["outer"]),
                                                 cached["count"])
        preloaded.load_real_statistics(stats)
        preloaded.update(fake[rank::world_size], real=False)
        result = {"fvd": value, "num_real": metric.statistics("real").count, "preloaded": float(preloaded.compute())}
        with open(f"{out_dir}/rank{rank}.json", "w") as handle:
            json.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_ddp_processes_sum_their_states(tmp_path):
    real, fake = random_videos(24, seed=1), random_videos(20, seed=2, shift=0.1)
    single = FrechetVideoDistance(small_extractor())
    single.update(real, real=True)
    single.update(fake, real=False)
    expected = float(single.compute())
    stats = single.statistics("real")
    cached = {"total": stats.total.tolist(), "outer": stats.outer.tolist(), "count": stats.count}
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), cached), nprocs=2, join=True,
                       start_method="fork")
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["num_real"] == 24
        assert result["fvd"] == pytest.approx(expected, rel=1e-9)
        assert result["preloaded"] == pytest.approx(expected, rel=1e-9)

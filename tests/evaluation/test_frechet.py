import numpy as np
import pytest
import scipy.linalg
import torch

from lightning_svd.evaluation import FeatureStatistics, frechet_distance


def random_covariance(rng: np.random.Generator, dim: int, rank: int | None = None) -> np.ndarray:
    factor = rng.normal(size=(dim, rank or 2 * dim))
    return factor @ factor.T / factor.shape[1]


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    root = root[0] if isinstance(root, tuple) else root
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2.0 * root.real))


@pytest.mark.parametrize("dim", [2, 16, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_sqrtm_on_random_covariances(dim, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = random_covariance(rng, dim), random_covariance(rng, dim)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    reference = scipy_frechet(mu1, sigma1, mu2, sigma2)
    assert abs(ours - reference) / abs(reference) < 1e-6


def test_closed_form_for_one_dimensional_gaussians():
    # FD(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    value = frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]])
    assert value == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_closed_form_for_commuting_covariances():
    # Same eigenvectors: FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = frechet_distance(mu1, basis @ np.diag(a) @ basis.T, mu2, basis @ np.diag(b) @ basis.T)
    assert value == pytest.approx(expected, rel=1e-9)


def test_identical_gaussians_give_zero_and_shift_adds_its_square():
    rng = np.random.default_rng(4)
    mu, sigma = rng.normal(size=8), random_covariance(rng, 8)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9
    shift = rng.normal(size=8)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-7)
    assert frechet_distance(mu + 5, sigma, mu + shift + 5, sigma) == pytest.approx(shift @ shift, rel=1e-7)


def test_rank_deficient_covariances_stay_real_and_non_negative():
    rng = np.random.default_rng(5)
    sigma1, sigma2 = random_covariance(rng, 32, rank=3), random_covariance(rng, 32, rank=2)
    mu = np.zeros(32)
    value = frechet_distance(mu, sigma1, mu, sigma2)
    assert np.isfinite(value) and value >= 0
    assert abs(frechet_distance(mu, sigma1, mu, sigma1)) < 1e-8
    assert value == pytest.approx(scipy_frechet(mu, sigma1, mu, sigma2), rel=1e-5, abs=1e-8)


def test_accepts_torch_tensors_and_rejects_bad_shapes():
    mu, sigma = torch.zeros(3, dtype=torch.float32), torch.eye(3)
    assert frechet_distance(mu, sigma, mu + 1, sigma) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


def test_statistics_mean_and_covariance_match_numpy():
    features = np.random.default_rng(6).normal(size=(50, 7)) * 3 + 10
    stats = FeatureStatistics(7).update(features)
    np.testing.assert_allclose(stats.mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(ddof=1), np.cov(features, rowvar=False), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(stats.covariance(ddof=0), np.cov(features, rowvar=False, bias=True), rtol=1e-9,
                               atol=1e-10)


def test_merge_of_parts_equals_one_pass():
    features = np.random.default_rng(7).normal(size=(90, 5))
    one_pass = FeatureStatistics(5).update(features)
    parts = [FeatureStatistics(5).update(chunk) for chunk in np.array_split(features, [10, 11, 60])]
    merged = FeatureStatistics.merged(parts)
    assert merged.count == 90
    np.testing.assert_allclose(merged.total, one_pass.total, rtol=1e-12)
    np.testing.assert_allclose(merged.outer, one_pass.outer, rtol=1e-12)
    other = FeatureStatistics(5).update(features[::-1] + 0.5)
    assert merged.frechet_distance(other) == pytest.approx(one_pass.frechet_distance(other), rel=1e-10)


def test_statistics_refuse_too_few_samples_and_wrong_dimensions():
    stats = FeatureStatistics(4)
    with pytest.raises(ValueError, match="at least 1"):
        _ = stats.mean
    stats.update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        stats.covariance(ddof=1)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        stats.update(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dimension"):
        stats.merge(FeatureStatistics(3))


def test_save_and_load_round_trip(tmp_path):
    features = np.random.default_rng(8).normal(size=(20, 6))
    stats = FeatureStatistics(6).update(features)
    path = stats.save(tmp_path / "stats.npz", {"extractor": "x", "frames": 16})
    loaded, metadata = FeatureStatistics.load(path)
    assert metadata == {"extractor": "x", "frames": 16}
    assert loaded.count == 20
    np.testing.assert_array_equal(loaded.outer, stats.outer)
    assert not list(tmp_path.glob("*.partial*"))

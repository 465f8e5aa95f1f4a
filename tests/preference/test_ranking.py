"""Elo (the SVD paper's shuffled-order protocol) and Bradley-Terry against hand-computed and simulated truths."""

import numpy as np
import pytest

from lightning_svd.preference.ranking import (
    bootstrap_bradley_terry,
    bradley_terry,
    bradley_terry_elo,
    central_interval,
    shuffled_elo,
    win_matrix,
)


def sequential_elo(votes, num_arms, k=1.0, initial=1000.0):
    """The paper's update written plainly, one vote at a time."""
    ratings = [initial] * num_arms
    for w, l in votes:
        expected_w = 1 / (1 + 10 ** ((ratings[l] - ratings[w]) / 400))
        expected_l = 1 / (1 + 10 ** ((ratings[w] - ratings[l]) / 400))
        ratings[w] += k * (1 - expected_w)
        ratings[l] += k * (0 - expected_l)
    return np.array(ratings)


def simulated_votes(strengths, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(strengths), n)
    b = (a + rng.integers(1, len(strengths), n)) % len(strengths)
    a_wins = rng.random(n) < 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    return np.where(a_wins, a, b), np.where(a_wins, b, a)


def test_one_vote_moves_both_arms_by_half_k():
    ratings = shuffled_elo([0], [1], num_arms=2, k=1.0, initial=1000.0, orders=5)
    np.testing.assert_allclose(ratings, [[1000.5, 999.5]] * 5)


def test_order_free_votes_match_the_plain_sequential_update():
    votes = [(0, 1)] * 30 + [(2, 1)] * 30
    ratings = shuffled_elo([0] * 30, [1] * 30, num_arms=3, orders=3)
    np.testing.assert_allclose(ratings[0], sequential_elo(votes[:30], 3))
    mixed = shuffled_elo([w for w, _ in votes], [l for _, l in votes], num_arms=3, orders=400, seed=1)
    rng = np.random.default_rng(7)
    reference = np.mean([sequential_elo([votes[i] for i in rng.permutation(len(votes))], 3) for _ in range(400)],
                        axis=0)
    np.testing.assert_allclose(mixed.mean(axis=0), reference, atol=0.2)


def test_elo_conserves_total_rating_and_depends_on_k():
    winners, losers = simulated_votes(np.array([0.0, 1.0, 2.0]), 200, seed=0)
    small = shuffled_elo(winners, losers, 3, k=1.0, orders=50)
    large = shuffled_elo(winners, losers, 3, k=4.0, orders=50)
    np.testing.assert_allclose(small.sum(axis=1), 3000.0)
    assert np.ptp(large.mean(axis=0)) > 2 * np.ptp(small.mean(axis=0))


def test_elo_and_bradley_terry_recover_the_true_order():
    strengths = np.array([0.0, 1.0, -0.8, 0.4])
    winners, losers = simulated_votes(strengths, 3000, seed=3)
    elo = shuffled_elo(winners, losers, 4, orders=200).mean(axis=0)
    assert list(np.argsort(elo)) == list(np.argsort(strengths))
    theta = bradley_terry(win_matrix(winners, losers, 4), ridge=1e-6)
    np.testing.assert_allclose(theta, strengths - strengths.mean(), atol=0.12)
    assert abs(theta.sum()) < 1e-6


def test_bradley_terry_stays_finite_for_an_arm_that_never_won():
    wins = np.array([[0, 5], [0, 0]])
    theta = bradley_terry(wins)
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1]
    elo = bradley_terry_elo(theta)
    assert elo[0] > 1000 > elo[1]


def test_bradley_terry_batch_equals_single_fits():
    winners, losers = simulated_votes(np.array([0.0, 0.5, 1.0]), 300, seed=4)
    wins = win_matrix(winners, losers, 3)
    stacked = bradley_terry(np.stack([wins, wins.T]))
    np.testing.assert_allclose(stacked[0], bradley_terry(wins))
    np.testing.assert_allclose(stacked[1], bradley_terry(wins.T))


def test_bootstrap_interval_covers_the_truth_and_narrows_with_more_votes():
    strengths = np.array([0.0, 0.7, -0.5])
    truth = bradley_terry_elo(strengths - strengths.mean())
    widths = []
    for n in (150, 2400):
        winners, losers = simulated_votes(strengths, n, seed=n)
        wins = win_matrix(winners, losers, 3)
        samples = bootstrap_bradley_terry(wins, rounds=500, seed=0, ridge=1e-6)
        intervals = central_interval(samples, bradley_terry_elo(bradley_terry(wins, ridge=1e-6)), 0.95)
        assert all(iv.low <= t <= iv.high for iv, t in zip(intervals, truth))
        widths.append(np.mean([iv.high - iv.low for iv in intervals]))
    assert widths[1] < widths[0] / 2


def test_no_votes_give_everyone_the_start_rating():
    assert np.all(shuffled_elo([], [], 3, orders=4) == 1000.0)
    assert np.all(bootstrap_bradley_terry(np.zeros((3, 3)), rounds=4) == 1000.0)


@pytest.mark.parametrize("winners, losers, message", [
    ([0], [0], "against itself"),
    ([0], [3], "arm indices"),
    ([0, 1], [1], "equal-length"),
])
def test_bad_matches_are_rejected(winners, losers, message):
    with pytest.raises(ValueError, match=message):
        shuffled_elo(winners, losers, 3, orders=2)

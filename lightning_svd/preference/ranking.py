"""Rankings from pairwise wins: the SVD paper's shuffled Elo and a Bradley-Terry fit with bootstrap intervals.

Votes come in as arm indices, `winners[n]` beat `losers[n]`. Both estimators use wins only (no ties), as the
paper's E.1.2 protocol does.
"""

from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with the central interval of its resampled distribution."""

    value: float
    low: float
    high: float


def check_matches(winners: np.ndarray, losers: np.ndarray, num_arms: int) -> tuple[np.ndarray, np.ndarray]:
    winners, losers = np.asarray(winners, dtype=np.int64), np.asarray(losers, dtype=np.int64)
    if winners.shape != losers.shape or winners.ndim != 1:
        raise ValueError(f"winners and losers must be equal-length 1-d arrays, got {winners.shape}, {losers.shape}")
    if winners.size and (min(winners.min(), losers.min()) < 0 or max(winners.max(), losers.max()) >= num_arms):
        raise ValueError(f"arm indices must lie in [0, {num_arms})")
    if np.any(winners == losers):
        raise ValueError("an arm cannot win against itself")
    return winners, losers


def shuffled_elo(winners, losers, num_arms: int, k: float = 1.0, initial: float = 1000.0, orders: int = 1000,
                 seed: int = 0) -> np.ndarray:
    """Sequential Elo over `orders` random orders of the votes (SVD E.1.2): ratings of shape (orders, num_arms).

    Each order starts every arm at `initial` and walks the votes once:
    E_w = 1 / (1 + 10^((R_l - R_w) / 400)), E_l = 1 / (1 + 10^((R_w - R_l) / 400)),
    R_w' = R_w + K (1 - E_w), R_l' = R_l + K (0 - E_l). All orders advance together, one vote per step.
    """
    winners, losers = check_matches(winners, losers, num_arms)
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((orders, winners.size)), axis=1)
    winner_steps, loser_steps = winners[order], losers[order]
    ratings = np.full((orders, num_arms), float(initial))
    rows = np.arange(orders)
    for step in range(winners.size):
        w, l = winner_steps[:, step], loser_steps[:, step]
        r_w, r_l = ratings[rows, w], ratings[rows, l]
        e_w = 1.0 / (1.0 + 10.0 ** ((r_l - r_w) / ELO_SCALE))
        e_l = 1.0 / (1.0 + 10.0 ** ((r_w - r_l) / ELO_SCALE))
        ratings[rows, w] = r_w + k * (1.0 - e_w)
        ratings[rows, l] = r_l + k * (0.0 - e_l)
    return ratings


def win_matrix(winners, losers, num_arms: int) -> np.ndarray:
    """wins[i, j] = how often arm i beat arm j."""
    winners, losers = check_matches(winners, losers, num_arms)
    wins = np.zeros((num_arms, num_arms), dtype=np.int64)
    np.add.at(wins, (winners, losers), 1)
    return wins


def bradley_terry(wins: np.ndarray, ridge: float = 0.01, iterations: int = 100) -> np.ndarray:
    """Bradley-Terry log-strengths theta for one win matrix (A, A) or a stack of them (B, A, A).

    Maximises sum_ij wins_ij log sigmoid(theta_i - theta_j) - ridge/2 |theta|^2 by Newton's method. The weak
    ridge prior keeps an arm that never won finite and fixes the free offset at mean(theta) = 0.
    """
    wins = np.asarray(wins, dtype=np.float64)
    stacked = wins if wins.ndim == 3 else wins[None]
    num_arms = stacked.shape[-1]
    games = stacked + np.swapaxes(stacked, 1, 2)
    theta = np.zeros(stacked.shape[:2])
    eye = np.eye(num_arms)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        gradient = (games * p).sum(axis=2) - stacked.sum(axis=2) + ridge * theta
        curvature = games * p * (1.0 - p)
        hessian = np.einsum("bi,ij->bij", curvature.sum(axis=2), eye) - curvature + ridge * eye
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return theta if wins.ndim == 3 else theta[0]


def bradley_terry_elo(theta: np.ndarray, initial: float = 1000.0) -> np.ndarray:
    """Log-strengths on the Elo scale: P(i beats j) = 1 / (1 + 10^(-(R_i - R_j) / 400))."""
    return initial + ELO_SCALE / np.log(10.0) * theta


def bootstrap_bradley_terry(wins: np.ndarray, rounds: int = 1000, seed: int = 0, ridge: float = 0.01,
                            initial: float = 1000.0) -> np.ndarray:
    """Bradley-Terry fits of `rounds` vote sets resampled with replacement: Elo-scale ratings (rounds, A)."""
    wins = np.asarray(wins, dtype=np.int64)
    total = int(wins.sum())
    if total == 0:
        return np.full((rounds, wins.shape[0]), float(initial))
    rng = np.random.default_rng(seed)
    resampled = rng.multinomial(total, wins.ravel() / total, size=rounds).reshape(rounds, *wins.shape)
    return bradley_terry_elo(bradley_terry(resampled, ridge=ridge), initial)


def central_interval(samples: np.ndarray, point: np.ndarray, level: float = 0.95) -> list[Interval]:
    """Per column of `samples` (N, A): the point estimate and the central `level` percentile interval."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail], axis=0)
    return [Interval(float(v), float(lo), float(hi)) for v, lo, hi in zip(point, low, high)]

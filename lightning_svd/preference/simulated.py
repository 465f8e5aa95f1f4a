"""A simulated rater panel: an automatic judge's per-video scores cast the study's pairwise votes.

The votes go through the app's own store and rankings (Elo with K = 1 over shuffled orders, Bradley-Terry), so an
ablation closes the paper's filter -> model -> preference loop in one command, and human raters later judge the
same pack with the same code. The votes live in their own SQLite file in the pack, apart from human votes.
Whatever shows these numbers must show `SimulatedPanel.label` with them: they are not people's judgements.
"""

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lightning_svd.preference.assignment import QUESTIONS, study_tasks
from lightning_svd.preference.pack import StudyPack
from lightning_svd.preference.ranking import Interval
from lightning_svd.preference.results import AGGREGATE, compute_results
from lightning_svd.preference.settings import StudySettings
from lightning_svd.preference.store import Vote, VoteStore

LABEL = "simulated raters"
SOURCE = "simulated"
DB_NAME = "simulated_votes.sqlite"


def rater_name(index: int) -> str:
    return f"simulated-rater-{index + 1:02d}"


def win_probability(margin: float, temperature: float) -> float:
    """P(the first video wins) = sigmoid(margin / temperature); temperature 0 always picks the higher score and
    leaves a tie to a coin flip."""
    if temperature == 0:
        return 0.5 + 0.5 * float(np.sign(margin))
    return 0.5 * (1.0 + math.tanh(margin / (2.0 * temperature)))


def _checked_scores(pack: StudyPack, scores: Mapping) -> dict[tuple[str, str], dict[str, float]]:
    """Every video of the pack with a finite score per question, or a ValueError naming what is missing."""
    checked = {}
    for key in pack.videos:
        entry = scores.get(key)
        if not isinstance(entry, Mapping) or not set(QUESTIONS) <= entry.keys():
            raise ValueError(f"scores[{key}] must map each question {list(QUESTIONS)} to a number, got {entry!r}")
        values = {question: float(entry[question]) for question in QUESTIONS}
        if not all(math.isfinite(value) for value in values.values()):
            raise ValueError(f"scores[{key}] must be finite numbers, got {values}")
        checked[key] = values
    return checked


def simulate_votes(pack: StudyPack, scores: Mapping[tuple[str, str], Mapping[str, float]], *,
                   votes_per_pair: int = 3, temperature: float, seed: int) -> list[Vote]:
    """The panel's votes: every pair of arms on every prompt id, for each question, `votes_per_pair` raters each.

    `scores[(arm, prompt_id)][question]` is the judge's score of that video, higher is better. A rater picks a
    video with probability sigmoid((s_mine - s_other) / temperature), on the same scale as the scores; sides are
    shuffled as the web app shuffles them. The same seed gives the same votes.
    """
    if isinstance(votes_per_pair, bool) or not isinstance(votes_per_pair, int) or votes_per_pair < 1:
        raise ValueError(f"votes_per_pair must be an integer >= 1, got {votes_per_pair!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    checked = _checked_scores(pack, scores)
    rng = np.random.default_rng(seed)
    now = time.time()
    votes = []
    for task in study_tasks(pack):
        margin = checked[(task.arm_a, task.prompt_id)][task.question] - checked[(task.arm_b, task.prompt_id)][
            task.question]
        first_wins = win_probability(margin, temperature)
        for index in range(votes_per_pair):
            left, right = (task.arm_a, task.arm_b) if rng.random() < 0.5 else (task.arm_b, task.arm_a)
            winner, loser = (task.arm_a, task.arm_b) if rng.random() < first_wins else (task.arm_b, task.arm_a)
            choice = "left" if winner == left else "right"
            votes.append(Vote(rater_name(index), task, left, right, choice, winner, loser, None, SOURCE, None, now))
    return votes


def _identity(vote: Vote) -> tuple:
    """What a vote says, without when it was cast."""
    return vote.rater, vote.task, vote.left_arm, vote.right_arm, vote.choice


def _replace_votes(store: VoteStore, votes: list[Vote]) -> None:
    """Make `votes` the store's votes in one transaction (a reader sees the old set or the new one); a store that
    already holds exactly these votes is left as it is. Votes from anyone but simulated raters are never deleted."""
    with store.transaction() as tx:
        existing = store.votes()
        foreign = sum(vote.source != SOURCE for vote in existing)
        if foreign:
            raise ValueError(f"{store.path} holds {foreign} votes not cast by simulated raters; keep simulated "
                             "votes in a database of their own (db_name)")
        if {_identity(vote) for vote in existing} == {_identity(vote) for vote in votes}:
            return
        tx.connection.execute("DELETE FROM votes")
        for vote in votes:
            tx.add_vote(vote)


@dataclass(frozen=True)
class ArmStanding:
    """One arm under one question: Elo the paper's way (interval over orders), its gain over the lowest arm
    (the paper's Fig. 3), Bradley-Terry on the Elo scale (bootstrap interval), and its wins and losses."""

    elo: Interval
    elo_gain: Interval
    bradley_terry: Interval
    wins: int
    losses: int

    @classmethod
    def from_dict(cls, data: Mapping) -> "ArmStanding":
        return cls(Interval(**data["elo"]), Interval(**data["elo_gain"]), Interval(**data["bradley_terry"]),
                   data["wins"], data["losses"])


@dataclass(frozen=True)
class PanelRanking:
    num_votes: int
    lowest_arm: str
    arms: dict[str, ArmStanding]

    @classmethod
    def from_dict(cls, data: Mapping) -> "PanelRanking":
        arms = {arm: ArmStanding.from_dict(entry) for arm, entry in data["arms"].items()}
        return cls(data["num_votes"], data["lowest_arm"], arms)


@dataclass(frozen=True)
class SimulatedPanel:
    """The panel's rankings, per question ("quality", "prompt_following") and pooled ("aggregate")."""

    db_path: Path
    votes_per_pair: int
    temperature: float
    seed: int
    num_votes: int
    rankings: dict[str, PanelRanking]
    label: str = LABEL

    def elo_gains(self, question: str = AGGREGATE) -> dict[str, float]:
        """Each arm's Elo gain over the lowest arm, as the paper's Fig. 3 reports it."""
        return {arm: standing.elo_gain.value for arm, standing in self.rankings[question].arms.items()}

    def to_dict(self) -> dict:
        return {**asdict(self), "db_path": str(self.db_path)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SimulatedPanel":
        rankings = {question: PanelRanking.from_dict(entry) for question, entry in data["rankings"].items()}
        return cls(Path(data["db_path"]), data["votes_per_pair"], data["temperature"], data["seed"],
                   data["num_votes"], rankings, data["label"])


def _standing(entry: Mapping) -> ArmStanding:
    def interval(key: str) -> Interval:
        return Interval(entry[key], entry[f"{key}_low"], entry[f"{key}_high"])

    return ArmStanding(interval("elo"), interval("elo_gain"), interval("bradley_terry"), entry["wins"],
                       entry["losses"])


def run_simulated_panel(pack_root, scores: Mapping[tuple[str, str], Mapping[str, float]], *, db_name: str = DB_NAME,
                        votes_per_pair: int = 3, temperature: float, seed: int = 0) -> SimulatedPanel:
    """Cast the panel's votes on the pack at `pack_root`, store them in `<pack>/<db_name>` and rank the arms.

    The study app's defaults rank them (Elo K = 1 from 1000 over 1000 orders, Bradley-Terry with 1000 bootstrap
    rounds); `seed` drives the votes and both rankings. A rerun replaces the simulated votes, or keeps them when
    they are the same. `temperature` is on the scale of the judge's scores, so it has no default.
    """
    if not db_name or Path(db_name).name != db_name:
        raise ValueError(f"db_name must be a file name inside the pack folder, got {db_name!r}")
    pack = StudyPack.load(pack_root)
    votes = simulate_votes(pack, scores, votes_per_pair=votes_per_pair, temperature=temperature, seed=seed)
    store = VoteStore(pack.root / db_name)
    _replace_votes(store, votes)
    settings = StudySettings(votes_per_pair=votes_per_pair, attention_check_rate=0.0, seed=seed)
    results = compute_results(pack, store.votes(), settings)
    rankings = {question: PanelRanking(entry["num_votes"], entry["lowest_arm"],
                                       {arm: _standing(arm_entry) for arm, arm_entry in entry["arms"].items()})
                for question, entry in results["rankings"].items()}
    return SimulatedPanel(store.path, votes_per_pair, temperature, seed, results["votes"]["counted"], rankings)

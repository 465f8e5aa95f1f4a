"""The simulated rater panel: a judge's scores become votes in the app's store and rank the arms its way."""

import json

import pytest

from lightning_svd.preference.pack import StudyPack
from lightning_svd.preference.simulated import (
    LABEL,
    SimulatedPanel,
    run_simulated_panel,
    simulate_votes,
    win_probability,
)
from lightning_svd.preference.store import VoteStore

QUESTIONS = ("quality", "prompt_following")
PAIRS, PROMPTS = 3, 3  # the demo pack: arms crisp, wobbly, degraded; three prompts


def judge(pack_dir, level=None):
    """Scores by arm (crisp 2 > wobbly 1 > degraded 0 on both questions), or one level for every video."""
    levels = {"crisp": 2.0, "wobbly": 1.0, "degraded": 0.0}
    pack = StudyPack.load(pack_dir)
    return {(arm, prompt): {q: levels[arm] if level is None else level for q in QUESTIONS}
            for arm, prompt in pack.videos}


def said(votes):
    return [(v.rater, v.task, v.left_arm, v.right_arm, v.choice, v.winner, v.loser) for v in votes]


def test_votes_flow_through_the_store_and_rank_the_better_arm_first(pack_dir):
    panel = run_simulated_panel(pack_dir, judge(pack_dir), temperature=0.5, seed=0)
    assert panel.label == LABEL == "simulated raters"
    assert panel.num_votes == PAIRS * PROMPTS * len(QUESTIONS) * 3
    stored = VoteStore(panel.db_path).votes()
    assert panel.db_path == pack_dir.resolve() / "simulated_votes.sqlite" and len(stored) == panel.num_votes
    assert {v.rater for v in stored} == {"simulated-rater-01", "simulated-rater-02", "simulated-rater-03"}
    assert all(v.source == "simulated" and v.winner == (v.left_arm if v.choice == "left" else v.right_arm)
               for v in stored)
    for question in (*QUESTIONS, "aggregate"):
        ranking = panel.rankings[question]
        assert ranking.num_votes == panel.num_votes // (1 if question == "aggregate" else 2)
        assert ranking.lowest_arm == "degraded"
        top = max(ranking.arms, key=lambda arm: ranking.arms[arm].elo.value)
        assert top == "crisp" and ranking.arms["crisp"].elo_gain.value > 0
        assert ranking.arms["degraded"].elo_gain.value == 0
        assert ranking.arms["crisp"].bradley_terry.low <= ranking.arms["crisp"].bradley_terry.value
    gains = panel.elo_gains()
    assert gains["crisp"] > gains["wobbly"] > gains["degraded"] == 0


def test_votes_are_determined_by_the_seed(pack_dir):
    pack, scores = StudyPack.load(pack_dir), judge(pack_dir)
    first = simulate_votes(pack, scores, temperature=2.0, seed=3)
    assert said(first) == said(simulate_votes(pack, scores, temperature=2.0, seed=3))
    assert said(first) != said(simulate_votes(pack, scores, temperature=2.0, seed=4))
    assert len({(v.left_arm, v.right_arm) for v in first}) == 6, "sides are shuffled"


def test_temperature_zero_is_deterministic_and_a_high_one_is_a_coin(pack_dir):
    pack = StudyPack.load(pack_dir)
    sharp = simulate_votes(pack, judge(pack_dir), votes_per_pair=10, temperature=0.0, seed=0)
    order = {"crisp": 2, "wobbly": 1, "degraded": 0}
    assert all(order[v.winner] > order[v.loser] for v in sharp)
    flat = simulate_votes(pack, judge(pack_dir), votes_per_pair=10, temperature=1e6, seed=0)
    better = sum(order[v.winner] > order[v.loser] for v in flat) / len(flat)
    assert len(flat) == PAIRS * PROMPTS * len(QUESTIONS) * 10 and 0.4 < better < 0.6
    ties = simulate_votes(pack, judge(pack_dir, level=1.0), votes_per_pair=10, temperature=0.0, seed=0)
    assert 0.4 < sum(v.winner == v.task.arm_a for v in ties) / len(ties) < 0.6
    assert win_probability(0.0, 0.0) == 0.5 and win_probability(1.0, 1.0) == pytest.approx(0.7310586)


def test_human_votes_stay_apart_and_reruns_replace_only_simulated_votes(open_study, pack_dir):
    study = open_study(attention_check_rate=0.0)
    item = study.next_item("alice")
    study.vote("alice", item["pair_id"], item["question"], "left")
    human_db = pack_dir / "votes.sqlite"
    before = human_db.read_bytes()

    first = run_simulated_panel(pack_dir, judge(pack_dir), temperature=1.0, seed=0)
    stamps = [v.created_at for v in VoteStore(first.db_path).votes()]
    again = run_simulated_panel(pack_dir, judge(pack_dir), temperature=1.0, seed=0)
    assert again == first and [v.created_at for v in VoteStore(first.db_path).votes()] == stamps, "kept as it was"
    other = run_simulated_panel(pack_dir, judge(pack_dir), temperature=1.0, seed=1)
    stored = VoteStore(other.db_path).votes()
    assert len(stored) == first.num_votes and said(stored) == said(
        simulate_votes(StudyPack.load(pack_dir), judge(pack_dir), temperature=1.0, seed=1))

    assert human_db.read_bytes() == before and [v.rater for v in study.votes()] == ["alice"]
    with pytest.raises(ValueError, match="1 votes not cast by simulated raters"):
        run_simulated_panel(pack_dir, judge(pack_dir), db_name="votes.sqlite", temperature=1.0)
    assert [v.rater for v in study.votes()] == ["alice"]


def test_results_round_trip_through_json(pack_dir):
    panel = run_simulated_panel(pack_dir, judge(pack_dir), votes_per_pair=1, temperature=0.0, seed=0)
    data = json.loads(json.dumps(panel.to_dict()))
    assert data["label"] == "simulated raters"
    assert data["rankings"]["aggregate"]["arms"]["crisp"]["elo_gain"]["value"] > 0
    assert SimulatedPanel.from_dict(data) == panel


@pytest.mark.parametrize("change, message", [
    (lambda scores: scores.popitem(), "must map each question"),
    (lambda scores: next(iter(scores.values())).pop("quality"), "must map each question"),
    (lambda scores: next(iter(scores.values())).update(quality=float("nan")), "finite"),
])
def test_scores_must_cover_every_video_and_question(pack_dir, change, message):
    scores = judge(pack_dir)
    change(scores)
    with pytest.raises(ValueError, match=message):
        simulate_votes(StudyPack.load(pack_dir), scores, temperature=1.0, seed=0)


@pytest.mark.parametrize("settings, message", [
    ({"votes_per_pair": 0}, "votes_per_pair"),
    ({"temperature": -1.0}, "temperature"),
    ({"db_name": "../votes.sqlite"}, "file name inside the pack"),
])
def test_bad_panel_settings_are_refused(pack_dir, settings, message):
    with pytest.raises(ValueError, match=message):
        run_simulated_panel(pack_dir, judge(pack_dir), **{"temperature": 1.0, **settings})

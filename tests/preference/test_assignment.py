"""Assignment: every pair on every prompt for both questions, least-covered first, never twice per rater."""

import random
from collections import Counter

from lightning_svd.preference.assignment import QUESTIONS, Assigner, attention_tasks, study_tasks
from lightning_svd.preference.pack import StudyPack


def test_tasks_cover_every_pair_prompt_and_question(pack_dir):
    pack = StudyPack.load(pack_dir)
    tasks = study_tasks(pack)
    assert len(tasks) == len(set(tasks)) == 3 * 3 * len(QUESTIONS)
    assert {(t.arm_a, t.arm_b) for t in tasks} == {("crisp", "wobbly"), ("crisp", "degraded"),
                                                   ("degraded", "wobbly")}
    checks = attention_tasks(pack)
    assert len(checks) == 3 * len(QUESTIONS) and all(c.is_attention_check for c in checks)
    clean_arms = {arm for c in checks for arm in (c.arm_a, c.arm_b) if not arm.startswith("degraded:")}
    assert clean_arms == set(pack.arms), "checks rotate over the arms"
    assert all({c.arm_a, c.arm_b} & {"degraded:" + arm for arm in pack.arms} for c in checks)


def test_assigner_prefers_least_covered_and_skips_seen(pack_dir):
    tasks = study_tasks(StudyPack.load(pack_dir))
    assigner = Assigner(tasks, [], votes_per_pair=3, attention_check_rate=0.0, rng=random.Random(0))
    demand = {t: 2 for t in tasks}
    demand[tasks[5]] = 0
    assert assigner.choose(demand, seen=set()) == tasks[5]
    assert assigner.choose(demand, seen={tasks[5]}) != tasks[5]
    assert assigner.choose({t: 3 for t in tasks}, seen=set()) is None
    assert assigner.choose(demand, seen=set(tasks)) is None
    assert assigner.remaining(demand, seen={tasks[0]}) == len(tasks) - 1


def test_attention_checks_come_at_the_configured_rate(pack_dir):
    pack = StudyPack.load(pack_dir)
    tasks, checks = study_tasks(pack), attention_tasks(pack)
    assigner = Assigner(tasks, checks, votes_per_pair=3, attention_check_rate=0.25, rng=random.Random(1))
    picks = Counter(assigner.choose({}, seen=set()).is_attention_check for _ in range(2000))
    assert 0.2 < picks[True] / 2000 < 0.3
    assert assigner.choose({}, seen=set(checks)).is_attention_check is False


def test_sides_are_randomised(pack_dir):
    task = study_tasks(StudyPack.load(pack_dir))[0]
    assigner = Assigner([task], [], 3, 0.0, random.Random(2))
    lefts = Counter(assigner.sides(task)[0] for _ in range(400))
    assert set(lefts) == {task.arm_a, task.arm_b} and min(lefts.values()) > 150

"""Which pair a rater sees next: every pair of arms on every prompt for both questions, about
`votes_per_pair` votes each, attention checks mixed in, and never the same pair and question twice per rater.
"""

import random
from itertools import combinations

from lightning_svd.preference.pack import ATTENTION_PREFIX, StudyPack
from lightning_svd.preference.store import Task

QUESTIONS = {
    "quality": "Which video has the better visual quality? (sharpness, smooth and realistic motion, no artefacts)",
    "prompt_following": "Which video follows the prompt better?",
}


def study_tasks(pack: StudyPack) -> list[Task]:
    """All pairs of arms on all prompts, once per question (the paper's E.1 protocol)."""
    return [Task.of(prompt.id, first, second, question)
            for prompt in pack.prompts
            for first, second in combinations(pack.arms, 2)
            for question in QUESTIONS]


def attention_arm(pack: StudyPack, prompt_index: int) -> str:
    """The arm whose video gets a degraded twin on this prompt; rotating spreads checks over all arms."""
    return pack.arms[prompt_index % len(pack.arms)]


def attention_tasks(pack: StudyPack) -> list[Task]:
    """One check per prompt and question: a clean video against its obviously degraded copy."""
    checks = []
    for index, prompt in enumerate(pack.prompts):
        arm = attention_arm(pack, index)
        checks += [Task.of(prompt.id, arm, ATTENTION_PREFIX + arm, question) for question in QUESTIONS]
    return checks


class Assigner:
    """Picks the least-covered task a rater has not seen; now and then an attention check instead."""

    def __init__(self, tasks: list[Task], checks: list[Task], votes_per_pair: int, attention_check_rate: float,
                 rng: random.Random):
        self.tasks, self.checks = tasks, checks
        self.votes_per_pair, self.attention_check_rate = votes_per_pair, attention_check_rate
        self.rng = rng

    def _open_tasks(self, demand: dict[Task, int], seen: set[Task]) -> list[Task]:
        return [t for t in self.tasks if t not in seen and demand.get(t, 0) < self.votes_per_pair]

    def remaining(self, demand: dict[Task, int], seen: set[Task]) -> int:
        """How many more tasks (attention checks aside) this rater could still be given."""
        return len(self._open_tasks(demand, seen))

    def choose(self, demand: dict[Task, int], seen: set[Task]) -> Task | None:
        """The task to show next, or None when this rater has nothing left to do."""
        open_tasks = self._open_tasks(demand, seen)
        if not open_tasks:
            return None
        unseen_checks = [c for c in self.checks if c not in seen]
        if unseen_checks and self.rng.random() < self.attention_check_rate:
            return self.rng.choice(unseen_checks)
        fewest = min(demand.get(t, 0) for t in open_tasks)
        return self.rng.choice([t for t in open_tasks if demand.get(t, 0) == fewest])

    def sides(self, task: Task) -> tuple[str, str]:
        """Left and right arm, in random order."""
        pair = [task.arm_a, task.arm_b]
        self.rng.shuffle(pair)
        return pair[0], pair[1]

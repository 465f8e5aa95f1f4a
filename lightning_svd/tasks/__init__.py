"""Tasks: the only layer that wires data, models, stages and callbacks together.

Each task module has `run(cfg, ctx) -> dict`; an experiment picks one with its `task:` key. A module may add
`check(cfg)`, which the command line calls before it creates the run dir, so bad settings leave nothing behind.
"""

import importlib

TASKS = {
    "train": "lightning_svd.tasks.train",
    "sample": "lightning_svd.tasks.sample",
    "corpus": "lightning_svd.tasks.corpus",
    "curate": "lightning_svd.tasks.curate",
    "study": "lightning_svd.tasks.study",
    "report": "lightning_svd.tasks.report",
    "evaluate": "lightning_svd.tasks.evaluate",
    "ablation": "lightning_svd.tasks.ablation",
    "build_arms": "lightning_svd.tasks.build_arms",
    "precompute": "lightning_svd.tasks.precompute",
}


def get_task(name: str):
    from ..errors import UserError

    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; registered tasks: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name]).run


def check_task(cfg) -> None:
    """Run the task's own `check(cfg)`, if it has one (raises UserError on bad settings)."""
    check = getattr(importlib.import_module(TASKS[cfg.task]), "check", None)
    if check is not None:
        check(cfg)

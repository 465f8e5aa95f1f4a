"""Study results: rater screening by attention checks, then Elo and Bradley-Terry per question and pooled.

Rater names, arm names and the pack path are written by others; the Markdown escapes them, since a Markdown
viewer renders links and passes raw HTML through.
"""

import re
from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np
from markupsafe import escape

from lightning_svd.preference.assignment import QUESTIONS, study_tasks
from lightning_svd.preference.pack import ATTENTION_PREFIX, StudyPack
from lightning_svd.preference.ranking import (
    bootstrap_bradley_terry,
    bradley_terry,
    bradley_terry_elo,
    central_interval,
    shuffled_elo,
    win_matrix,
)
from lightning_svd.preference.settings import StudySettings
from lightning_svd.preference.store import OPEN, Rater, Vote

AGGREGATE = "aggregate"
TITLES = {"quality": "Visual quality", "prompt_following": "Prompt following",
          AGGREGATE: "Aggregate (both questions pooled)"}
MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]|~])")


def markdown_text(value) -> str:
    """Text shown as itself in Markdown (a table cell too): inline syntax backslash-escaped, then HTML escaped."""
    return str(escape(MARKDOWN_INLINE.sub(r"\\\1", str(value))))


def _identity(vote: Vote, enrolled: Mapping[str, Rater]) -> str:
    """`link`, `open`, or where the votes came from (`import`, `simulated`); web votes of a name never enrolled
    predate the links and were free names, so `open`."""
    if vote.rater in enrolled:
        return enrolled[vote.rater].kind
    return "import" if vote.source.startswith("import") else OPEN if vote.source == "web" else vote.source


def consensus_agreement(votes: list[Vote]) -> dict[str, tuple[int, int]]:
    """Per rater: (votes agreeing with the other raters' majority on the same task, votes where that majority
    exists). A rater who agrees with others well below the rest is worth a look beside the attention checks."""
    winners: dict = defaultdict(Counter)
    for vote in votes:
        winners[vote.task][vote.winner] += 1
    agreement: dict[str, list[int]] = {}
    for vote in votes:
        others = winners[vote.task].copy()
        others[vote.winner] -= 1
        ranked = others.most_common(2) + [(None, 0)]
        entry = agreement.setdefault(vote.rater, [0, 0])
        if ranked[0][1] > ranked[1][1]:
            entry[0] += int(ranked[0][0] == vote.winner)
            entry[1] += 1
    return {rater: (agreed, compared) for rater, (agreed, compared) in agreement.items()}


def screen_raters(votes: list[Vote], min_pass_rate: float, enrolled: Mapping[str, Rater] | None = None
                  ) -> dict[str, dict]:
    """Per rater: identity, votes, attention checks answered and passed, agreement with the other raters, and
    whether the rater is left out of rankings (too few checks passed, or revoked by the owner)."""
    enrolled = enrolled or {}
    raters: dict[str, dict] = {}
    for vote in votes:
        entry = raters.setdefault(vote.rater, {"identity": _identity(vote, enrolled), "votes": 0,
                                               "attention_checks": 0, "attention_passed": 0})
        if vote.task.is_attention_check:
            entry["attention_checks"] += 1
            entry["attention_passed"] += int(not vote.winner.startswith(ATTENTION_PREFIX))
        else:
            entry["votes"] += 1
    agreement = consensus_agreement([v for v in votes if not v.task.is_attention_check])
    for rater, entry in raters.items():
        checks = entry["attention_checks"]
        entry["pass_rate"] = entry["attention_passed"] / checks if checks else None
        agreed, compared = agreement.get(rater, (0, 0))
        entry["agreement"] = agreed / compared if compared else None
        entry["agreement_votes"] = compared
        entry["revoked"] = rater in enrolled and enrolled[rater].revoked_at is not None
        entry["excluded"] = entry["revoked"] or (bool(checks) and entry["pass_rate"] < min_pass_rate)
    return raters


def rank_arms(arms: tuple[str, ...], votes: list[Vote], settings: StudySettings) -> dict:
    """Elo the paper's way (mean over shuffled orders, gain over the lowest arm) and Bradley-Terry, per arm."""
    index = {arm: i for i, arm in enumerate(arms)}
    winners = np.array([index[v.winner] for v in votes], dtype=np.int64)
    losers = np.array([index[v.loser] for v in votes], dtype=np.int64)
    elo = shuffled_elo(winners, losers, len(arms), k=settings.elo_k, initial=settings.elo_initial,
                       orders=settings.elo_orders, seed=settings.seed)
    elo_mean = elo.mean(axis=0)
    lowest = int(np.argmin(elo_mean))
    gains = elo - elo[:, [lowest]]
    elo_ci = central_interval(elo, elo_mean, settings.interval)
    gain_ci = central_interval(gains, elo_mean - elo_mean[lowest], settings.interval)
    wins = win_matrix(winners, losers, len(arms))
    bt_point = bradley_terry_elo(bradley_terry(wins, ridge=settings.bradley_terry_ridge), settings.elo_initial)
    bt_samples = bootstrap_bradley_terry(wins, rounds=settings.bootstrap_rounds, seed=settings.seed,
                                         ridge=settings.bradley_terry_ridge, initial=settings.elo_initial)
    bt_ci = central_interval(bt_samples, bt_point, settings.interval)
    per_arm = {}
    for i, arm in enumerate(arms):
        per_arm[arm] = {
            "elo": elo_ci[i].value, "elo_low": elo_ci[i].low, "elo_high": elo_ci[i].high,
            "elo_gain": gain_ci[i].value, "elo_gain_low": gain_ci[i].low, "elo_gain_high": gain_ci[i].high,
            "bradley_terry": bt_ci[i].value, "bradley_terry_low": bt_ci[i].low, "bradley_terry_high": bt_ci[i].high,
            "wins": int(wins[i].sum()), "losses": int(wins[:, i].sum()),
        }
    return {"num_votes": len(votes), "lowest_arm": arms[lowest], "arms": per_arm, "win_matrix": wins.tolist()}


def coverage(pack: StudyPack, votes: list[Vote], target: int) -> dict:
    """How far collection got: per question, tasks at the vote target and the fewest votes on any task."""
    counts = Counter(v.task for v in votes if not v.task.is_attention_check)
    report = {}
    for question in QUESTIONS:
        tasks = [t for t in study_tasks(pack) if t.question == question]
        per_task = [counts.get(t, 0) for t in tasks]
        report[question] = {"tasks": len(tasks), "tasks_at_target": sum(c >= target for c in per_task),
                            "min_votes": min(per_task), "mean_votes": float(np.mean(per_task))}
    return report


def compute_results(pack: StudyPack, votes: list[Vote], settings: StudySettings,
                    enrolled: Mapping[str, Rater] | None = None) -> dict:
    """Rankings and rater screening; `enrolled` (the store's raters) tells link raters, open names and revoked
    ones apart."""
    raters = screen_raters(votes, settings.attention_min_pass_rate, enrolled)
    known_prompts = {p.id for p in pack.prompts}
    real = [v for v in votes if not v.task.is_attention_check]
    counted = [v for v in real if not raters[v.rater]["excluded"] and v.task.prompt_id in known_prompts
               and v.winner in pack.arms and v.loser in pack.arms]
    rankings = {q: rank_arms(pack.arms, [v for v in counted if v.task.question == q], settings) for q in QUESTIONS}
    rankings[AGGREGATE] = rank_arms(pack.arms, counted, settings)
    return {
        "pack": str(pack.root),
        "arms": list(pack.arms),
        "num_prompts": len(pack.prompts),
        "questions": dict(QUESTIONS),
        "votes": {
            "total": len(votes),
            "attention_checks": len(votes) - len(real),
            "from_excluded_raters": sum(raters[v.rater]["excluded"] for v in real),
            "from_open_enrolment": sum(raters[v.rater]["identity"] == OPEN for v in real),
            "not_in_pack": sum(v.task.prompt_id not in known_prompts or v.winner not in pack.arms
                               or v.loser not in pack.arms for v in real),
            "counted": len(counted),
        },
        "coverage": coverage(pack, counted, settings.votes_per_pair),
        "raters": raters,
        "rankings": rankings,
        "method": {
            "elo": {"k": settings.elo_k, "initial": settings.elo_initial, "orders": settings.elo_orders,
                    "ties": "none (wins only)", "estimate": "mean over shuffled orders",
                    "gain": "Elo minus the Elo of the lowest-ranked arm, per order"},
            "bradley_terry": {"fit": "maximum likelihood, Newton, weak ridge prior",
                              "ridge": settings.bradley_terry_ridge, "bootstrap_rounds": settings.bootstrap_rounds},
            "interval": settings.interval,
            "aggregate": "votes of both questions pooled",
            "attention_min_pass_rate": settings.attention_min_pass_rate,
            "seed": settings.seed,
        },
    }


def _ci(entry: dict, key: str) -> str:
    return f"[{entry[key + '_low']:.1f}, {entry[key + '_high']:.1f}]"


def render_markdown(results: dict) -> str:
    votes, method = results["votes"], results["method"]
    interval = f"{100 * method['interval']:g} %"
    lines = [
        "# Human-preference study",
        "",
        f"Pack {markdown_text(results['pack'])}: {results['num_prompts']} prompts, arms "
        f"{', '.join(markdown_text(arm) for arm in results['arms'])}.",
        f"Votes: {votes['counted']} counted of {votes['total']} ({votes['attention_checks']} attention checks, "
        f"{votes['from_excluded_raters']} from excluded raters (below the attention pass rate "
        f"{method['attention_min_pass_rate']:g}, or revoked), {votes['not_in_pack']} naming arms or prompts not in "
        f"the pack; {votes['from_open_enrolment']} from open-enrolment names nobody vouched for).",
        "",
        f"Elo as in the SVD paper (E.1.2): K = {method['elo']['k']:g}, start {method['elo']['initial']:g}, wins only, "
        f"mean over {method['elo']['orders']} shuffled orders, with the {interval} interval over those orders "
        "(it shows order sensitivity, not sampling error); gain = Elo over the lowest-ranked arm. Bradley-Terry: "
        f"maximum likelihood (ridge {method['bradley_terry']['ridge']:g}), {interval} interval from "
        f"{method['bradley_terry']['bootstrap_rounds']} bootstrap resamples of the votes (sampling error).",
    ]
    for question, ranking in results["rankings"].items():
        lines += ["", f"## {TITLES[question]} ({ranking['num_votes']} votes)", "",
                  f"| arm | Elo | {interval} over orders | gain over lowest | {interval} over orders | Bradley-Terry | "
                  f"{interval} bootstrap | wins | losses |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ordered = sorted(ranking["arms"].items(), key=lambda item: -item[1]["elo"])
        for arm, entry in ordered:
            lines.append(f"| {markdown_text(arm)} | {entry['elo']:.1f} | {_ci(entry, 'elo')} | "
                         f"{entry['elo_gain']:.1f} | {_ci(entry, 'elo_gain')} | {entry['bradley_terry']:.1f} | "
                         f"{_ci(entry, 'bradley_terry')} | {entry['wins']} | {entry['losses']} |")
    lines += ["", "## Coverage", "", "| question | tasks | at target | fewest votes | mean votes |",
              "|---|---:|---:|---:|---:|"]
    for question, entry in results["coverage"].items():
        lines.append(f"| {question} | {entry['tasks']} | {entry['tasks_at_target']} | {entry['min_votes']} | "
                     f"{entry['mean_votes']:.2f} |")
    lines += ["", "## Raters", "",
              "Identity: link = a personal link the owner minted; open = a free name (open enrolment), anyone could "
              "have used it. Agreement: share of a rater's votes that side with the other raters' majority on the "
              "same pair and question (where there is one).", "",
              "| rater | identity | votes | attention checks passed | agreement with others | excluded |",
              "|---|---|---:|---:|---:|---|"]
    for rater, entry in sorted(results["raters"].items()):
        checks = f"{entry['attention_passed']} / {entry['attention_checks']}"
        agreement = (f"{100 * entry['agreement']:.0f} % of {entry['agreement_votes']}"
                     if entry["agreement"] is not None else "n/a")
        excluded = "revoked" if entry["revoked"] else "yes" if entry["excluded"] else "no"
        lines.append(f"| {markdown_text(rater)} | {markdown_text(entry['identity'])} | {entry['votes']} | "
                     f"{checks} | {agreement} | {excluded} |")
    return "\n".join(lines) + "\n"

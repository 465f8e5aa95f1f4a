"""The paper's tables in Markdown with our runs' rows beside the paper's, plus our ablation and study tables."""

from __future__ import annotations

import json

from .dataset_stats import table1_cells
from .paper import TABLE1, TABLE1_COLUMNS, TABLE2, TABLE2_NOTE, TABLE3, TABLE3_NOTE
from .runs import RunResults


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(text) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _comparability(results: dict) -> str:
    if results.get("comparable"):
        return "yes"
    reason = results.get("reason")
    return f"no: {_cell(reason)}" if reason else "no"


def table2_rows(runs: list[RunResults]) -> list[dict]:
    return [{"label": run.label, "run_dir": str(run.run_dir), "fvd": run.results.get("fvd"),
             "num_samples": run.results.get("num_samples"), "comparable": bool(run.results.get("comparable")),
             "reason": run.results.get("reason")} for run in runs]


def render_table2(runs: list[RunResults]) -> str:
    lines = ["## Table 2: zero-shot text-to-video generation on UCF-101 (FVD)", "",
             "| Method | FVD ↓ | Samples | Comparable with the paper | From |", "|---|---:|---:|---|---|"]
    lines += [f"| {name} | {fvd:.2f} | | | paper |" for name, fvd in TABLE2]
    for run in runs:
        r = run.results
        lines.append(f"| **{_cell(run.label)}** | {_number(r.get('fvd'), 2)} | {r.get('num_samples', '–')} | "
                     f"{_comparability(r)} | `{run.run_dir}` |")
    if not runs:
        lines.append("| *(no UCF-101 evaluation among the runs given)* | | | | |")
    return "\n".join([*lines, "", TABLE2_NOTE])


def table3_rows(runs: list[RunResults]) -> list[dict]:
    return [{"label": run.label, "run_dir": str(run.run_dir), **{k: run.results.get(k) for k in
             ("lpips", "psnr", "clip_s", "num_objects")}, "comparable": bool(run.results.get("comparable")),
             "reason": run.results.get("reason")} for run in runs]


def render_table3(runs: list[RunResults]) -> str:
    lines = ["## Table 3: multi-view generation (21-view orbits)", "",
             "| Method | LPIPS ↓ | PSNR ↑ | CLIP-S ↑ | Objects | Comparable with the paper | From |",
             "|---|---:|---:|---:|---:|---|---|"]
    lines += [f"| {name} | {lpips:.2f} | {psnr:.2f} | {clip:.2f} | 50 | | paper |"
              for name, lpips, psnr, clip in TABLE3]
    for run in runs:
        r = run.results
        lines.append(f"| **{_cell(run.label)}** | {_number(r.get('lpips'), 3)} | {_number(r.get('psnr'), 2)} | "
                     f"{_number(r.get('clip_s'), 3)} | {r.get('num_objects', '–')} | {_comparability(r)} | "
                     f"`{run.run_dir}` |")
    if not runs:
        lines.append("| *(no multi-view evaluation among the runs given)* | | | | | | |")
    return "\n".join([*lines, "", TABLE3_NOTE])


def render_table1(ours: list[tuple[str, dict]]) -> str:
    """Paper columns first, then one column per clip table of ours (label, statistics)."""
    header = [*TABLE1_COLUMNS, *(f"**{_cell(label)}**" for label, _ in ours)]
    lines = ["## Table 1: dataset statistics", "", "| | " + " | ".join(header) + " |",
             "|---|" + "---:|" * len(header)]
    cells = [table1_cells(stats) for _, stats in ours]
    for row, paper_values in TABLE1.items():
        lines.append(f"| {row} | " + " | ".join([*paper_values, *(c[row] for c in cells)]) + " |")
    if not ours:
        lines += ["", "*(no clip table given: set report.clip_tables or give a run whose results name a "
                  "clip_table)*"]
    return "\n".join(lines)


def render_ablation(run: RunResults) -> str:
    r = run.results
    lines = [f"## Ablation: {_cell(r.get('criterion'))} ({_cell(run.label)})", "",
             "| Arm | Removed | Clips | Threshold | Steps | Final loss | FVD ↓ | Elo |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in r["arms"]:
        removed = arm.get("removed_fraction")
        elo = arm.get("elo")
        lines.append(
            f"| {_cell(arm.get('name'))} | {'–' if removed is None else f'{100 * removed:g} %'} | "
            f"{arm.get('num_clips', '–')} | {_number(arm.get('threshold'), 4)} | {arm.get('train_steps', '–')} | "
            f"{_number(arm.get('final_loss'), 4)} | {_number(arm.get('fvd'), 2)} | "
            f"{_number(elo, 1) if isinstance(elo, int | float) else '–'} |")
    extractor = r.get("feature_extractor")
    if extractor is not None:
        lines += ["", f"FVD features: `{_cell(json.dumps(extractor, sort_keys=True))}`."]
    if r.get("notes"):
        lines += ["", _cell(r["notes"])]
    return "\n".join(lines)


def render_study(run: RunResults, chart_name: str | None) -> str:
    rankings = run.results["rankings"]
    lines = [f"## Human preference: {_cell(run.label)}", "",
             "| Arm | " + " | ".join(f"{q} Elo gain" for q in rankings) + " |", "|---|" + "---:|" * len(rankings)]
    for arm in run.results["arms"]:
        cells = []
        for ranking in rankings.values():
            entry = ranking["arms"][arm]
            cells.append(f"{entry['elo_gain']:.1f} [{entry['elo_gain_low']:.1f}, {entry['elo_gain_high']:.1f}]")
        lines.append(f"| {_cell(arm)} | " + " | ".join(cells) + " |")
    if chart_name:
        lines += ["", f"![Elo gain over the lowest arm]({chart_name})"]
    return "\n".join(lines)

"""The paper's tables with our runs' rows beside the paper's, plus our ablation and study tables.

Tables 1-3 are built once as a `Table` (cells as text, which rows are ours) and rendered from it as Markdown
here and as PNG by `figures.write_table_image`, so both always show the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .dataset_stats import table1_cells
from .paper import TABLE1, TABLE1_COLUMNS, TABLE2, TABLE2_NOTE, TABLE3, TABLE3_NOTE
from .runs import RunResults


@dataclass
class Table:
    """A titled table of text cells; `ours[i]` marks row i as one of our runs (bold in Markdown, shaded in PNG)."""

    title: str
    columns: list[str]
    right_aligned: set[int]
    rows: list[list[str]] = field(default_factory=list)
    ours: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, cells: list, ours: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row of {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_cell(c) for c in cells])
        self.ours.append(ours)

    def markdown(self) -> str:
        rule = "|".join("---:" if i in self.right_aligned else "---" for i in range(len(self.columns)))
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |", f"|{rule}|"]
        for cells, ours in zip(self.rows, self.ours):
            shown = [f"**{cells[0]}**" if ours and cells[0] else cells[0], *cells[1:]]
            lines.append("| " + " | ".join(shown) + " |")
        for note in self.notes:
            lines += ["", note]
        return "\n".join(lines)


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(text) -> str:
    return "" if text is None else str(text).replace("|", "/").replace("\n", " ")


def _comparability(results: dict) -> str:
    if results.get("comparable"):
        return "yes"
    reason = results.get("reason")
    return f"no: {_cell(reason)}" if reason else "no"


def table2_rows(runs: list[RunResults]) -> list[dict]:
    return [{"label": run.label, "run_dir": str(run.run_dir), "fvd": run.results.get("fvd"),
             "num_samples": run.results.get("num_samples"), "comparable": bool(run.results.get("comparable")),
             "reason": run.results.get("reason")} for run in runs]


def table2(runs: list[RunResults]) -> Table:
    table = Table("Table 2: zero-shot text-to-video generation on UCF-101 (FVD)",
                  ["Method", "FVD ↓", "Samples", "Comparable with the paper", "From"], {1, 2}, notes=[TABLE2_NOTE])
    for name, fvd in TABLE2:
        table.add([name, f"{fvd:.2f}", "", "", "paper"])
    for run in runs:
        r = run.results
        table.add([run.label, _number(r.get("fvd"), 2), r.get("num_samples", "–"), _comparability(r),
                   f"`{run.run_dir}`"], ours=True)
    if not runs:
        table.add(["*(no UCF-101 evaluation among the runs given)*", "", "", "", ""])
    return table


def table3_rows(runs: list[RunResults]) -> list[dict]:
    return [{"label": run.label, "run_dir": str(run.run_dir), **{k: run.results.get(k) for k in
             ("lpips", "psnr", "clip_s", "num_objects")}, "comparable": bool(run.results.get("comparable")),
             "reason": run.results.get("reason")} for run in runs]


def table3(runs: list[RunResults]) -> Table:
    table = Table("Table 3: multi-view generation (21-view orbits)",
                  ["Method", "LPIPS ↓", "PSNR ↑", "CLIP-S ↑", "Objects", "Comparable with the paper", "From"],
                  {1, 2, 3, 4}, notes=[TABLE3_NOTE])
    for name, lpips, psnr, clip in TABLE3:
        table.add([name, f"{lpips:.2f}", f"{psnr:.2f}", f"{clip:.2f}", "50", "", "paper"])
    for run in runs:
        r = run.results
        table.add([run.label, _number(r.get("lpips"), 3), _number(r.get("psnr"), 2), _number(r.get("clip_s"), 3),
                   r.get("num_objects", "–"), _comparability(r), f"`{run.run_dir}`"], ours=True)
    if not runs:
        table.add(["*(no multi-view evaluation among the runs given)*", "", "", "", "", "", ""])
    return table


def table1(ours: list[tuple[str, dict]]) -> Table:
    """Paper columns first, then one column per clip table of ours (label, statistics)."""
    columns = ["", *TABLE1_COLUMNS, *(f"**{_cell(label)}**" for label, _ in ours)]
    table = Table("Table 1: dataset statistics", columns, set(range(1, len(columns))))
    cells = [table1_cells(stats) for _, stats in ours]
    for row, paper_values in TABLE1.items():
        table.add([row, *paper_values, *(c[row] for c in cells)])
    for label, stats in ours:
        if stats["num_empty_rows"] or stats["num_error_rows"]:
            table.notes.append(f"*{_cell(label)}, not counted: {stats['num_empty_rows']} empty (the video decodes "
                               f"but yields no clip), {stats['num_error_rows']} error (it cannot be read)*")
    if not ours:
        table.notes.append("*(no clip table given: set report.clip_tables or give a run whose results name a "
                           "clip_table)*")
    return table


def ablation_elo(run: RunResults) -> dict | None:
    """An ablation's per-arm Elo (from its study votes) shaped like study results for the Elo chart: one
    aggregate group of gains over the lowest arm, without intervals (the ablation keeps only the mean Elo).
    None when no arm has an Elo yet."""
    rated = {arm.name: float(arm.elo) for arm in run.ablation.arms
             if isinstance(arm.elo, int | float) and not isinstance(arm.elo, bool)}
    if not rated:
        return None
    lowest = min(rated.values())
    gains = {name: {"elo_gain": elo - lowest} for name, elo in rated.items()}
    return {"arms": list(rated), "rankings": {"aggregate": {"arms": gains}}, "method": {}}


def render_ablation(run: RunResults, chart_name: str | None = None) -> str:
    result = run.ablation
    lines = [f"## Ablation: {_cell(result.criterion)} ({_cell(run.label)})", "",
             "| Arm | Removed | Clips | Threshold | Steps | Final loss | FVD ↓ | Elo |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in result.arms:
        removed, steps = arm.removed_fraction, arm.train_steps
        lines.append(
            f"| {_cell(arm.name)} | {'–' if removed is None else f'{100 * removed:g} %'} | {arm.num_clips} | "
            f"{_number(arm.threshold, 4)} | {'–' if steps is None else steps} | {_number(arm.final_loss.mean, 4)} | "
            f"{_number(arm.fvd.mean, 2)} | {_number(arm.elo, 1) if isinstance(arm.elo, int | float) else '–'} |")
    if result.feature_extractor is not None:
        lines += ["", f"FVD features: `{_cell(json.dumps(result.feature_extractor, sort_keys=True))}`."]
    if result.notes:
        lines += ["", _cell(" ".join(result.notes))]
    if chart_name:
        lines += ["", f"![Elo gain over the lowest arm (aggregate of both questions)]({chart_name})"]
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

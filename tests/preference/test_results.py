"""results.md shows user-written text as text (no HTML, links or broken tables), and each rater's agreement
with the others beside the attention checks."""

import csv
import html
import io
import json
import re

import markdown

from lightning_svd.preference.results import render_markdown

HOSTILE_RATERS = [
    "x<script>alert(1)</script>",
    "i<img src=x onerror=alert(1)>",
    "t|</td><td>|",
    "l[x](javascript:alert(1))",
    "b**bold**_it_`code`\\",
    'q"&amp;<!-- -->',
]
HOSTILE_ARM = "w|<b>x</b>[y](javascript:z)"


def import_votes(study, tmp_path, rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rater", "prompt_id", "question", "left_arm", "right_arm", "choice"])
    writer.writerows(rows)
    (tmp_path / "votes.csv").write_text(buffer.getvalue())
    assert study.import_csv(tmp_path / "votes.csv")["recorded"] == len(rows)


def test_user_written_text_is_escaped_in_results_md(pack_dir, open_study, tmp_path):
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    manifest["arms"] = [HOSTILE_ARM if arm == "wobbly" else arm for arm in manifest["arms"]]
    for video in manifest["videos"]:
        video["arm"] = HOSTILE_ARM if video["arm"] == "wobbly" else video["arm"]
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))
    study = open_study(attention_check_rate=0.0)
    import_votes(study, tmp_path, [(rater, "red_ball", "quality", "crisp", HOSTILE_ARM, "left")
                                   for rater in HOSTILE_RATERS])
    text = render_markdown(study.results())
    for raw in ("<script", "<img", "</td>", "<b>", "<!--"):
        assert raw not in text, raw
    assert not re.search(r"(?<!\\)\]\(", text), "no link survives"

    page = markdown.markdown(text, extensions=["tables"])
    assert not re.search(r"<(script|img|b)\b|href=|<!--", page)
    tables = re.findall(r"<tbody>(.*?)</tbody>", page, re.S)
    rater_rows = re.findall(r"<tr>(.*?)</tr>", tables[-1], re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rater_rows]
    assert all(len(row) == 6 for row in cells), "no name breaks the table"
    assert sorted(html.unescape(row[0]) for row in cells) == sorted(HOSTILE_RATERS), "names shown as written"
    arm_cells = {html.unescape(re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[0])
                 for row in re.findall(r"<tr>(.*?)</tr>", tables[0], re.S)}
    assert HOSTILE_ARM in arm_cells


def test_each_rater_shows_agreement_with_the_others(open_study, tmp_path):
    study = open_study(attention_check_rate=0.0)
    rows = []
    for prompt in ("red_ball", "blue_square", "green_orbit"):
        for question in ("quality", "prompt_following"):
            for rater in ("p1", "p2", "p3"):
                rows += [(rater, prompt, question, "crisp", "degraded", "left"),
                         (rater, prompt, question, "wobbly", "degraded", "left")]
            rows += [("contrarian", prompt, question, "crisp", "degraded", "right"),
                     ("contrarian", prompt, question, "wobbly", "degraded", "right")]
    import_votes(study, tmp_path, rows)
    raters = study.results()["raters"]
    assert raters["contrarian"]["agreement"] == 0.0 and raters["contrarian"]["agreement_votes"] == 12
    assert all(raters[name]["agreement"] == 1.0 for name in ("p1", "p2", "p3"))
    text = render_markdown(study.results())
    assert "| contrarian | import | 12 | 0 / 0 | 0 % of 12 | no |" in text

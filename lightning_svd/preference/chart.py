"""The results bar chart (Elo gain over the lowest arm, with intervals), drawn with Pillow alone."""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lightning_svd.preference.results import TITLES

COLOURS = ((66, 114, 196), (237, 125, 49), (112, 173, 71), (165, 105, 189), (91, 155, 213), (255, 192, 0),
           (38, 68, 120), (158, 72, 14))
WIDTH, HEIGHT = 1000, 520
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 30, 60, 110


def write_elo_chart(results: dict, path: Path) -> Path:
    """One group of bars per question (and pooled), one bar per arm: Elo gain with its interval as a whisker.

    `results` is the study's (rankings of every arm, each with elo_gain and its interval); entries without
    `elo_gain_low`/`elo_gain_high` get no whisker, and a ranking without `num_votes` no vote count.
    """
    rankings, arms = results["rankings"], results["arms"]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
    entries = [entry for r in rankings.values() for entry in r["arms"].values()]
    top = max([1.0] + [entry.get("elo_gain_high", entry["elo_gain"]) for entry in entries])
    bottom = min([0.0] + [entry.get("elo_gain_low", entry["elo_gain"]) for entry in entries])
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def y_of(value: float) -> float:
        return MARGIN_TOP + (top - value) / (top - bottom) * plot_height

    interval = results["method"].get("interval")
    whiskers = f" (whiskers: {100 * interval:g} % interval over shuffled vote orders)" if interval else ""
    draw.text((MARGIN_LEFT, 15), f"Elo gain over the lowest-ranked arm{whiskers}", fill="black", font=font)
    for tick in range(6):
        value = bottom + (top - bottom) * tick / 5
        draw.line([(MARGIN_LEFT, y_of(value)), (WIDTH - MARGIN_RIGHT, y_of(value))], fill=(225, 225, 225))
        draw.text((MARGIN_LEFT - 8, y_of(value)), f"{value:.1f}", fill="black", font=small, anchor="rm")
    group_width = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / len(rankings)
    bar_width = group_width * 0.8 / len(arms)
    for group, (question, ranking) in enumerate(rankings.items()):
        group_left = MARGIN_LEFT + group * group_width + group_width * 0.1
        for i, arm in enumerate(arms):
            entry = ranking["arms"][arm]
            left = group_left + i * bar_width
            colour = COLOURS[i % len(COLOURS)]
            y_bar, y_zero = sorted((y_of(entry["elo_gain"]), y_of(0.0)))
            draw.rectangle([left + 2, y_bar, left + bar_width - 2, max(y_zero, y_bar + 1)], fill=colour)
            if "elo_gain_low" in entry and "elo_gain_high" in entry:
                centre = left + bar_width / 2
                draw.line([(centre, y_of(entry["elo_gain_low"])), (centre, y_of(entry["elo_gain_high"]))],
                          fill="black", width=2)
        votes = f" (n={ranking['num_votes']})" if "num_votes" in ranking else ""
        draw.text((group_left + group_width * 0.4, HEIGHT - MARGIN_BOTTOM + 10),
                  f"{TITLES[question].split(' (')[0]}{votes}", fill="black", font=font, anchor="ma")
    draw.line([(MARGIN_LEFT, y_of(0.0)), (WIDTH - MARGIN_RIGHT, y_of(0.0))], fill="black")
    legend_x = MARGIN_LEFT
    for i, arm in enumerate(arms):
        draw.rectangle([legend_x, HEIGHT - 45, legend_x + 14, HEIGHT - 31], fill=COLOURS[i % len(COLOURS)])
        draw.text((legend_x + 20, HEIGHT - 46), arm, fill="black", font=font)
        legend_x += 30 + draw.textlength(arm, font=font)
    path = Path(path)
    image.save(path)
    return path

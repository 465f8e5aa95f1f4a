"""Show an ablation's typed results: honest notes on what moved, the Markdown table, HParams, plots and samples."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lightning_svd.ablation.results import AblationResult, ArmResult, Spread


def direction(values: list[float]) -> str:
    steps = np.diff(values)
    if np.all(steps == 0):
        return "is the same in every arm"
    if np.all(steps < 0):
        return "falls monotonically"
    if np.all(steps > 0):
        return "rises monotonically"
    return "does not move monotonically"


def honest_notes(arms: list[ArmResult], extractor_comparable: bool, extractor_reason: str | None,
                 ordering: str = "As the removed fraction grows") -> list[str]:
    """What moved across arms (in `ordering`), in which direction, and whether the moves exceed the seed-to-seed
    spread."""
    notes = []
    for label, measures in (
            ("the share of planted-degraded clips in the training data", [Spread(a.degraded_share) for a in arms]),
            ("the share of samples the detector calls degraded", [a.degraded_sample_share for a in arms]),
            ("the Elo gain from simulated raters", [a.simulated_elo_gain for a in arms]),
            ("FVD", [a.fvd for a in arms]),
            ("the final training loss (mean over the last 20 % of steps)", [a.final_loss for a in arms])):
        values = [m.mean for m in measures]
        if len(values) < 2 or any(v is None for v in values):
            continue
        text = f"{ordering}, {label} {direction(values)} ({', '.join(f'{v:.4g}' for v in values)})"
        spreads = [m.sd for m in measures]
        if all(s is not None for s in spreads):
            largest_gap, largest_spread = max(values) - min(values), max(spreads)
            verdict = "exceeds" if largest_gap > 2 * largest_spread else "is within twice"
            text += (f"; the largest gap between arms ({largest_gap:.4g}) {verdict} the largest seed-to-seed "
                     f"spread ({largest_spread:.4g})")
        notes.append(text + ".")
    if not extractor_comparable:
        notes.append(f"FVD features: {extractor_reason or 'not the paper extractor'}; the numbers rank these arms "
                     "against each other only.")
    return notes


def sample_check_note(sample_change: list[float], real_change: float, seed: int) -> str:
    """How much the samples' consecutive frames change against the real clips, and what that means for FVD."""
    low, high = min(sample_change), max(sample_change)
    if high > 2 * real_change:
        verdict = "samples far above the real clips flicker, and their FVD says little about the arms"
    elif high < real_change / 2:
        verdict = "samples far below the real clips barely move"
    else:
        verdict = "the samples hold together over time about as much as the real clips"
    return (f"Sample check: consecutive frames of the seed-{seed} samples differ by {low:.1f}-{high:.1f} "
            f"(mean |change|, 0-255), the real clips by {real_change:.1f}; {verdict}.")


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_spread(measure: Spread, digits: int) -> str:
    text = _number(measure.mean, digits)
    return text if measure.sd is None or measure.mean is None else f"{text} ± {measure.sd:.{digits}f}"


def _share(value, spread=None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" + ("" if spread is None else f" ± {100 * spread:.1f}")


def render_markdown(result: AblationResult) -> str:
    simulated = "Elo gain, simulated raters (± sd)"
    lines = [f"# Ablation: {result.criterion} ({result.experiment}, {result.profile} profile)", "",
             f"| Arm | Removed | Clips | Degraded in training data | Degraded-looking samples (± sd) | {simulated} | "
             "FVD ↓ (± sd) | Follows its prompt | Final loss (± sd) | Elo, people |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in result.arms:
        lines.append(
            f"| {arm.name} | {100 * arm.removed_fraction:.4g} % | {arm.num_clips} | {_share(arm.degraded_share)} | "
            f"{_share(arm.degraded_sample_share.mean, arm.degraded_sample_share.sd)} | "
            f"{_with_spread(arm.simulated_elo_gain, 1)} | {_with_spread(arm.fvd, 2)} | "
            f"{_share(arm.prompt_following)} | {_with_spread(arm.final_loss, 4)} | {_number(arm.elo, 1)} |")
    if result.seeds:
        lines += ["", f"Mean over seeds {list(result.seeds)}; ± is the seed-to-seed sample standard deviation. "
                  "Thresholds: " + ", ".join(f"{a.name} {_number(a.threshold, 4)}" for a in result.arms) + "."]
    lines += ["", "Notes:", *[f"- {note}" for note in result.notes]]
    if result.plot:
        lines += ["", f"![Degraded-looking samples, simulated-rater Elo and FVD per arm]({result.plot})"]
    if result.sample_grid:
        lines += ["", "One sample per prompt and arm (frames left to right), under the real clip of each prompt:", "",
                  f"![Samples per arm]({result.sample_grid})"]
    return "\n".join(lines) + "\n"


def final_logged_mean(tensorboard_dir: Path, tag: str, last_fraction: float = 0.2) -> float | None:
    """The mean of a scalar over the last `last_fraction` of its logged steps: one batch's loss swings with its
    noise levels and clips, the mean over the end of training is what an arm's data changed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not tensorboard_dir.is_dir():
        return None
    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return None
    scalars = events.Scalars(tag)
    last_step = scalars[-1].step
    start = last_step - last_fraction * last_step
    return round(float(np.mean([s.value for s in scalars if s.step >= start])), 6)


def write_hparams(writer, result: AblationResult) -> None:
    """One HParams run per arm, so TensorBoard's HParams view lines the arms up side by side."""
    for arm in result.arms:
        hparams = {"criterion": result.criterion, "arm": arm.name, "removed_fraction": arm.removed_fraction,
                   "num_clips": arm.num_clips, "threshold": _or_nan(arm.threshold)}
        metrics = {"ablation/degraded_share": _or_nan(arm.degraded_share)}
        for name in ("fvd", "final_loss", "degraded_sample_share", "simulated_elo_gain"):
            measure = getattr(arm, name)
            metrics[f"ablation/{name}"], metrics[f"ablation/{name}_spread"] = _or_nan(measure.mean), _or_nan(measure.sd)
        writer.add_hparams(hparams, metrics, run_name=arm.name)
    writer.flush()


def _or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def write_plot(arms: list[ArmResult], path: Path, width: int = 1080, height: int = 360) -> Path:
    """The detector's degraded share of the samples, the simulated raters' Elo gain and FVD (each mean ± sd over
    seeds) against the removed fraction, side by side."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    panels = [("degraded-looking samples (mean ± sd)", [a.degraded_sample_share for a in arms], (200, 70, 40)),
              ("Elo gain, simulated raters (mean ± sd)", [a.simulated_elo_gain for a in arms], (40, 150, 60)),
              ("FVD (mean ± sd)", [a.fvd for a in arms], (40, 90, 200))]
    xs = [a.removed_fraction for a in arms]
    ticks, axis = [f"{x:g}" for x in xs], "removed fraction"
    if len(set(xs)) < len(xs):  # arms of equal size (curated vs uncurated): one position per arm
        xs, ticks, axis = list(range(len(arms))), [a.name for a in arms], "arm"
    panel_width = width // len(panels)
    for index, (title, measures, colour) in enumerate(panels):
        left, top, right, bottom = index * panel_width + 50, 40, (index + 1) * panel_width - 20, height - 50
        draw.text((left, 12), title, fill="black")
        draw.rectangle((left, top, right, bottom), outline="black")
        draw.text((left, bottom + 18), axis, fill="black")
        known = [(x, m.mean, m.sd) for x, m in zip(xs, measures, strict=True) if m.mean is not None]
        if not known:
            draw.text((left + 10, top + 10), "not available", fill="gray")
            continue
        low = min(v - (s or 0) for _, v, s in known)
        high = max(v + (s or 0) for _, v, s in known)
        low, high = (low - 0.5, high + 0.5) if high == low else (low - 0.05 * (high - low), high + 0.05 * (high - low))
        x_high = max(max(xs), 1e-9)

        def at(x, y, left=left, right=right, top=top, bottom=bottom, low=low, high=high, x_high=x_high):
            return (left + 15 + (right - left - 30) * x / x_high, bottom - (bottom - top) * (y - low) / (high - low))

        draw.text((left - 45, top), f"{high:.3g}", fill="black")
        draw.text((left - 45, bottom - 10), f"{low:.3g}", fill="black")
        for x, tick in zip(xs, ticks, strict=True):
            draw.text((at(x, low)[0] - 10, bottom + 4), tick, fill="black")
        points = [at(x, v) for x, v, _ in known]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for (x, v, s), (px, py) in zip(known, points, strict=True):
            if s:
                draw.line((px, at(x, v - s)[1], px, at(x, v + s)[1]), fill=colour, width=1)
                for y in (v - s, v + s):
                    draw.line((px - 4, at(x, y)[1], px + 4, at(x, y)[1]), fill=colour, width=1)
            draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=colour)
    image.save(path)
    return path


def write_sample_grid(rows: list[tuple[str, np.ndarray]], path: Path, scale: int = 4, gap: int = 6,
                      label_width: int = 210) -> Path:
    """One labelled row per entry of `rows` ((label, (N, T, H, W, 3) uint8 videos)): each video's frames side by
    side, videos separated by a gap, upscaled `scale` times without smoothing, so a reader sees what the proxies
    learned next to the real clips."""
    count = max(len(videos) for _, videos in rows)
    frames, height, width = rows[0][1].shape[1:4]
    cell_width = frames * width * scale
    row_height = height * scale + gap
    image = Image.new("RGB", (label_width + count * (cell_width + gap), len(rows) * row_height + gap), "white")
    draw = ImageDraw.Draw(image)
    for row, (label, videos) in enumerate(rows):
        top = gap + row * row_height
        draw.text((6, top + height * scale // 2 - 6), label, fill="black")
        for column, video in enumerate(videos):
            strip = Image.fromarray(np.concatenate(list(video), axis=1))
            strip = strip.resize((cell_width, height * scale), Image.NEAREST)
            image.paste(strip, (label_width + column * (cell_width + gap), top))
    image.save(path)
    return path


def write_sample_images(writer, grid: list[tuple[str, np.ndarray]], samples: dict[str, list[np.ndarray]],
                        num_prompts: int) -> None:
    """TensorBoard shows the arms, not only their numbers: the grid, and per arm every prompt's samples (rows: the
    samples of one seed's repetitions; frames left to right), beside the scalars and HParams."""
    rows = [videos for _, videos in grid]
    writer.add_image("samples/grid", _mosaic(rows), dataformats="HWC")
    for arm, per_seed in samples.items():
        for seed_index, videos in enumerate(per_seed):
            repetitions = [videos[start:start + num_prompts] for start in range(0, len(videos), num_prompts)]
            writer.add_image(f"samples/{arm}/seed{seed_index}", _mosaic(repetitions), dataformats="HWC")
    writer.flush()


def _mosaic(rows: list[np.ndarray], scale: int = 3, gap: int = 2) -> np.ndarray:
    """Rows of (N, T, H, W, 3) uint8 videos as one image: each video's frames side by side, white gaps."""
    frames, height, width = rows[0].shape[1:4]
    columns = max(len(videos) for videos in rows)
    cell = frames * width + gap
    image = np.full((len(rows) * (height + gap), columns * cell, 3), 255, dtype=np.uint8)
    for r, videos in enumerate(rows):
        for c, video in enumerate(videos):
            image[r * (height + gap):r * (height + gap) + height, c * cell:c * cell + frames * width] = \
                np.concatenate(list(video), axis=1)
    return image.repeat(scale, axis=0).repeat(scale, axis=1)

"""Task `corpus`: generate (or reuse) the synthetic corpus, summarise its ground truth and preview it."""

import json
import shutil
from collections import Counter

import numpy as np

from ..synthetic import CorpusSpec, corpus_videos, ensure_corpus, load_truth
from ..synthetic.preview import contact_sheet


def summarize(root) -> dict:
    """Counts and ranges of what the corpus plants: cuts by kind, scene motion, text and degradations."""
    truths = [load_truth(v) for v in corpus_videos(root)]
    scenes = [s for t in truths for s in t["scenes"]]
    speeds = [s["speed"] for s in scenes if s["motion"] != "static"]
    text_areas = [s["text_area"] for s in scenes if s["text"]]
    return {
        "videos": len(truths),
        "frames": sum(t["num_frames"] for t in truths),
        "seconds": round(sum(t["duration_s"] for t in truths), 2),
        "scenes": len(scenes),
        "cuts": dict(Counter(c["kind"] for t in truths for c in t["cuts"])),
        "static_scenes": sum(s["motion"] == "static" for s in scenes),
        "speed_px_per_frame": [round(min(speeds), 2), round(max(speeds), 2)] if speeds else None,
        "scenes_with_text": len(text_areas),
        "text_area": [round(min(text_areas), 3), round(max(text_areas), 3)] if text_areas else None,
        "degraded_scenes": dict(Counter(s["degradation"] for s in scenes if s["degradation"])),
    }


def run(cfg, ctx) -> dict:
    spec = CorpusSpec.from_config(cfg.corpus)
    root = ensure_corpus(spec, cfg.cache_dir)
    ctx.log.info(f"corpus at {root}")
    manifest = json.loads((root / "manifest.json").read_text())
    results = {"experiment": cfg.experiment, "profile": cfg.profile, "corpus_dir": str(root), "key": spec.key(),
               "seconds_to_generate": manifest["seconds_to_generate"], **summarize(root)}
    sheet = contact_sheet(root, cfg.preview.max_videos)
    sheet.save(ctx.run_dir / "contact_sheet.png")
    shutil.copy(root / "manifest.json", ctx.run_dir / "corpus_manifest.json")
    writer = ctx.tensorboard()
    writer.add_image("corpus/contact_sheet", np.asarray(sheet), dataformats="HWC")
    writer.add_text("corpus/summary", f"```\n{json.dumps(results, indent=1)}\n```")
    rows = "\n".join(f"| {k} | {v} |" for k, v in results.items())
    ctx.write_results(results, f"# Synthetic corpus\n\n| key | value |\n|---|---|\n{rows}\n\n"
                               f"![contact sheet](contact_sheet.png)\n")
    ctx.log.info(f"{results['videos']} videos, {results['scenes']} scenes, cuts {results['cuts']}; "
                 f"contact sheet: {ctx.run_dir / 'contact_sheet.png'}")
    return results

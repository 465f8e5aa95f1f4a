"""LVD-10M and its arms at scale: wall time and peak memory of `experiment=build_arms` on a simulated clip table.

Makes (once, kept under --dir) a clip table of --rows rows with every column of the contract (lightning_svd/
clip_table.py SCHEMA): about 11 clips per source video (LVD's mean), clip durations around LVD's 11.6 s at 30 fps,
captions from a pool, random scores, 0.5 % error rows, in part files of 1M rows. Then runs, as a user would,

    python run.py experiment=build_arms ablation.clip_table=DIR ablation.subset.size=N ablation.subset.fraction=null
        ablation.criterion=aesthetic

under `/usr/bin/time -v` and prints the command's wall time and peak resident memory against the targets
(10M rows: under 60 s and 4 GB on the 2-core development machine), from Parquet on disk to every file written, with
its CPU time and the load average (on a shared machine the wall time follows the other work).

    python benchmarks/build_arms_scale.py [--rows 10000000] [--subset 9800000] [--engine memory] [--dir PATH]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_svd.clip_table import (  # noqa: E402
    CAPTION_COLUMNS,
    CLIP_SOURCE_COLUMNS,
    SCHEMA,
    SCORE_COLUMNS,
    config_column,
    model_column,
)

PART_ROWS = 1_000_000
CLIPS_PER_VIDEO = 11
CAPTIONS = np.array([f"a {look} shot of {thing} {when}" for look in ("wide", "close", "slow", "handheld", "aerial")
                     for thing in ("a dog", "two people talking", "a city street", "waves", "a kitchen", "traffic")
                     for when in ("at night", "in the rain", "at noon", "indoors")], dtype=object)
TARGET_SECONDS, TARGET_GB = 60.0, 4.0


def string_array(chars: np.ndarray) -> pa.Array:
    """One string per row of a (rows, width) uint8 array, built from its buffer (no Python objects)."""
    rows, width = chars.shape
    offsets = pa.py_buffer((np.arange(rows + 1, dtype=np.int32) * width).tobytes())
    return pa.Array.from_buffers(pa.string(), rows, [None, offsets, pa.py_buffer(np.ascontiguousarray(chars))])


def hex_ids(values: np.ndarray) -> pa.Array:
    """16 lowercase hex digits per uint64 (a clip id like curation's)."""
    shifts = np.arange(15, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (values[:, None] >> shifts) & np.uint64(15)
    return string_array(np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles.astype(np.intp)])


def numbered_paths(values: np.ndarray, prefix: str, digits: int, suffix: str) -> pa.Array:
    """`prefix`, the value zero-padded to `digits`, `suffix`."""
    numbers = (values[:, None] // 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)) % 10 + ord("0")
    parts = [np.broadcast_to(np.frombuffer(prefix.encode(), np.uint8), (len(values), len(prefix))),
             numbers.astype(np.uint8),
             np.broadcast_to(np.frombuffer(suffix.encode(), np.uint8), (len(values), len(suffix)))]
    return string_array(np.concatenate(parts, axis=1))


def simulated_part(start: int, rows: int, rng: np.random.Generator) -> pa.Table:
    """Rows `start` .. `start + rows` of the simulated table, every contract column in the contract's type."""
    error = pa.array(rng.random(rows) < 0.005)
    duration = np.maximum(2.0, rng.exponential(11.6, rows))
    start_s = rng.uniform(0.0, 300.0, rows)
    start_frame = np.round(start_s * 30).astype(np.int64)
    num_frames = np.round(duration * 30).astype(np.int64)
    scores = {
        "clip_score": rng.normal(0.3, 0.05, rows),
        "aesthetic_score": rng.normal(5.0, 1.0, rows),
        "ocr_area": np.where(rng.random(rows) < 0.7, 0.0, rng.uniform(0.0, 0.3, rows)),
        "flow_score": np.where(rng.random(rows) < 0.1, 0.0, rng.exponential(2.0, rows)),
    }

    def unless_error(values: np.ndarray) -> pa.Array:
        return pc.if_else(error, pa.nulls(rows, pa.float64()), pa.array(values))

    caption = pa.array(CAPTIONS[rng.integers(0, len(CAPTIONS), rows)], pa.string())
    constant = {config_column(name): "0123456789ab" for name in SCORE_COLUMNS}
    constant.update({model_column(name): f"{name}: simulated" for name in (*SCORE_COLUMNS, *CAPTION_COLUMNS)})
    columns = {
        "clip_id": hex_ids(rng.integers(0, 2**63, rows, dtype=np.int64).astype(np.uint64)),
        "video_path": numbered_paths(np.arange(start, start + rows) // CLIPS_PER_VIDEO, "/data/lvd/", 9, ".mp4"),
        "start_s": pa.array(start_s), "end_s": pa.array(start_s + duration), "start_frame": pa.array(start_frame),
        "end_frame": pa.array(start_frame + num_frames), "fps": pa.array(np.full(rows, 30.0)),
        "width": pa.array(np.full(rows, 1280)), "height": pa.array(np.full(rows, 720)),
        "num_frames": pa.array(num_frames), "caption": caption,
        **{name: caption for name in CAPTION_COLUMNS if name != "caption_sidecar"},
        **{name: unless_error(values) for name, values in scores.items()},
        **{CLIP_SOURCE_COLUMNS[name]: unless_error(scores["clip_score"] + rng.normal(0, 0.01, rows))
           for name in CAPTION_COLUMNS if name != "caption_sidecar"},
        "status": pc.if_else(error, "error", "ok"),
        "error": pc.if_else(error, "cannot decode", pa.nulls(rows, pa.string())),
        **{name: pa.array(np.full(rows, value, dtype=object), pa.string()) for name, value in constant.items()},
    }
    return pa.Table.from_arrays([columns.get(f.name, pa.nulls(rows, f.type)) for f in SCHEMA], schema=SCHEMA)


def make_table(folder: Path, rows: int) -> Path:
    """The simulated table in part files of 1M rows, made once per row count (a marker says it is complete)."""
    done = folder / f"_simulated_{rows}.json"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, start in enumerate(range(0, rows, PART_ROWS)):
        pq.write_table(simulated_part(start, min(PART_ROWS, rows - start), rng), folder / f"part-{index:05d}.parquet")
        print(f"  wrote rows {start:,} .. {min(start + PART_ROWS, rows):,}", flush=True)
    done.write_text(json.dumps({"rows": rows}))
    return folder


def measured(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak resident GB of `command`, from GNU time's report."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the command failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr).group(1)
    seconds = sum(float(part) * 60 ** power for power, part in enumerate(reversed(wall.split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", done.stderr).group(1)) for kind in ("User", "System"))
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, cpu, peak_kb / 1024 ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--subset", type=int, default=9_800_000, help="ablation.subset.size (the paper's 9.8M)")
    parser.add_argument("--engine", default="memory", choices=("memory", "streaming", "ray"))
    parser.add_argument("--criterion", default="aesthetic")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "lightning_svd_build_arms_scale")
    args = parser.parse_args()
    table = make_table(args.dir / f"table_{args.rows}", args.rows)
    run_dir = args.dir / f"run_{args.engine}"
    command = [sys.executable, "run.py", "experiment=build_arms", f"ablation.clip_table={table}",
               f"ablation.subset.size={args.subset}", "ablation.subset.fraction=null",
               f"ablation.criterion={args.criterion}", f"ablation.subset.engine={args.engine}", f"run_dir={run_dir}"]
    print("$ " + " ".join(command[1:]), flush=True)
    load = os.getloadavg()[0]
    seconds, cpu, peak_gb = measured(command)
    results = json.loads((run_dir / "results.json").read_text())
    print(f"rows {args.rows:,}, subset {results['subset']['num_clips']:,}, arms "
          + ", ".join(f"{a['num_clips']:,}" for a in results["arms"]) + f", LVD-F {results['lvd_f']['num_clips']:,}")
    print(f"task steps (s): {results['seconds']}")
    print(f"wall {seconds:.1f} s (target < {TARGET_SECONDS:g} s), CPU {cpu:.1f} s, "
          f"peak RSS {peak_gb:.2f} GB (target < {TARGET_GB:g} GB); load average {load:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

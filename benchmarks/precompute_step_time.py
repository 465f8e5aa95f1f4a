"""Step time of the tiny stage trained online vs from precomputed shards, in one process. Never run as a test.

The tiny pretrain_video stage (tiny profile: 4 frames of 32x32, batch 2, the embedded corpus) takes optimizer steps
from three data sources in turn, round after round, so that every source sees the same load on a shared machine:
online with decoded clips cached in memory (the tiny default; its cache is filled first), online decoding every
window (what a table too large for memory costs), and from shards that `precompute` writes first (its one-off time is
printed too). A step is fetching the batch, the stage's loss (encoding included where the batch is online), backward
and AdamW, as the train task runs it, without Trainer overhead; one data process (num_workers=0). One torch thread by
default: on a 2-core machine shared with other jobs, two threads made every step 15x slower and the comparison noise.
`--override KEY=VALUE` sets a stage key for the shards and the training alike (e.g. the tiny KL autoencoder).
    PYTHONPATH=. python benchmarks/precompute_step_time.py --steps 30
    PYTHONPATH=. python benchmarks/precompute_step_time.py --steps 30 --override train.autoencoder.kind=kl \
        --override train.autoencoder.preset=tiny
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch


def batches(loader):
    """The loader's batches, epoch after epoch."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def main() -> None:
    from lightning_svd import training
    from lightning_svd.config import load_config
    from lightning_svd.run_context import create_run
    from lightning_svd.tasks import precompute

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        cfg = load_config("precompute", "tiny", [f"run_dir={folder}"])
        cfg.precompute.overrides = args.override
        ctx = create_run(cfg)
        precompute.run(cfg, ctx)
        ctx.close()
        precompute_seconds = time.perf_counter() - started
        table = Path(folder) / "clip_table.parquet"
        cfg = load_config("pretrain_video", "tiny", [f"train.data.table={table}", *args.override])
        L.seed_everything(int(cfg.seed), verbose=False)
        buckets = training.motion_buckets(cfg, table, None)
        stage = training.build_stage(cfg, buckets)
        optimizer = stage.configure_optimizers()["optimizer"]
        loaders = {}
        for name, data in (("online, clips cached", ["train.data.cache_clips=true"]),
                           ("online, decoding", ["train.data.cache_clips=false"]),
                           ("from shards", [f"train.data.shards={folder}"])):
            source_cfg = load_config("pretrain_video", "tiny", [f"train.data.table={table}", *args.override, *data])
            loaders[name] = training.build_datamodule(source_cfg, table, buckets).train_dataloader()
        sources = {name: batches(loader) for name, loader in loaders.items()}
        for _ in range(len(loaders["online, clips cached"])):  # one epoch fills the cache
            next(sources["online, clips cached"])
        times = {name: [] for name in sources}
        stage.train()
        for step in range(args.steps):
            for name, source in sources.items():
                begun = time.perf_counter()
                loss = stage.compute_loss(next(source), step).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                times[name].append(time.perf_counter() - begun)
    shards = statistics.mean(times["from shards"])
    print(json.dumps({"threads": torch.get_num_threads(), "steps": args.steps, "overrides": args.override,
                      "load_average": [round(v, 1) for v in os.getloadavg()],
                      "precompute_seconds": round(precompute_seconds, 1)}))
    print("| data | s/step (mean) | s/step (median) | vs shards |\n|---|---|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {statistics.mean(seconds):.3f} | {statistics.median(seconds):.3f} | "
              f"{statistics.mean(seconds) / shards:.2f}x |")


if __name__ == "__main__":
    main()

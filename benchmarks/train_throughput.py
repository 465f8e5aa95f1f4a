"""Training throughput of a stage. Never run as a test.

CPU (default): clips/s of a tiny stage through the real train task (DataModule + Trainer), by default
pretrain_video for 10 steps; `--all-stages` runs every stage experiment exactly as a user does
(`python run.py experiment=NAME`, tiny profile, its own step count) and reports the wall time of each run, which
the tiny profile promises stays under two minutes on a 2-core CPU.
    PYTHONPATH=. python benchmarks/train_throughput.py --steps 10
    PYTHONPATH=. python benchmarks/train_throughput.py --all-stages
GPU: one image-to-video stage on the `svd` UNet preset at 14 x 320 x 576 (random weights, ViT-H-14 image tower
built from its config, SD 2.1 KL autoencoder), bf16 autocast, gradient checkpointing on: step time
(forward + backward + AdamW), peak memory and MFU (FLOPs counted by torch's FlopCounterMode over one step,
divided by step time and the device's dense bf16 peak, given with --peak-tflops).
    PYTHONPATH=. python benchmarks/train_throughput.py --device cuda --steps 5 --peak-tflops 989
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
STAGE_EXPERIMENTS = ("pretrain_image_edm", "pretrain_video", "finetune_t2v_hq", "i2v", "frame_interpolation",
                     "camera_lora", "multiview", "ablation_proxy")


def cpu_tiny(steps: int) -> dict:
    from lightning_svd.config import load_config
    from lightning_svd.run_context import create_run
    from lightning_svd.tasks import train

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = load_config("pretrain_video", "tiny", [f"run_dir={run_dir}", f"trainer.max_steps={steps}",
                                                     "trainer.enable_progress_bar=false"])
        ctx = create_run(cfg)
        try:
            results = train.run(cfg, ctx)
        finally:
            ctx.close()
    return {"mode": "cpu tiny pretrain_video", "threads": torch.get_num_threads(), "steps": steps,
            "frames": cfg.train.num_frames, "size": [cfg.train.height, cfg.train.width],
            "batch": cfg.train.data.batch_size, "clips_per_second": results["clips_per_second"]}


def cpu_all_stages() -> list[dict]:
    """Each stage experiment as `python run.py experiment=NAME` runs it (tiny profile, its own steps): wall time
    of the whole command (start-up, data, training, in-training samples, checkpoint) and its clips/s."""
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for experiment in STAGE_EXPERIMENTS:
            run_dir = Path(root) / experiment
            started = time.perf_counter()
            subprocess.run([sys.executable, "run.py", f"experiment={experiment}", f"run_dir={run_dir}",
                            "trainer.enable_progress_bar=false"], cwd=REPO, check=True, capture_output=True)
            seconds = time.perf_counter() - started
            results = json.loads((run_dir / "results.json").read_text())
            rows.append({"experiment": experiment, "steps": results["steps"], "wall_seconds": round(seconds, 1),
                         "clips_per_second": results["clips_per_second"], "final_loss": results["final_loss"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def i2v_stage_config(frames: int, height: int, width: int, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The paper profile's image-to-video stage section at `frames` x `height` x `width` (svd UNet, ViT-H-14 image
    tower built from its config, random weights; no weight paths checked), with `overrides` applied last."""
    from lightning_svd.config import load_config

    cfg = load_config("i2v", "paper", [f"frames={frames}", f"train.height={height}", f"train.width={width}",
                                       "train.open_clip.model=ViT-H-14", *overrides], check_paths=False)
    return OmegaConf.to_container(cfg.train, resolve=True)


def build_stage(stage_cfg: dict, device: str):
    """The stage of `stage_cfg` on `device`, its random weights drawn there (a 2-billion-parameter stage is drawn
    on the GPU in seconds, on the CPU in minutes); if that fails, drawn on the CPU and moved, saying so."""
    from lightning_svd.stages import STAGES

    try:
        with torch.device(device):
            stage = STAGES[stage_cfg["name"]](stage=stage_cfg)
    except Exception as error:  # noqa: BLE001 - any failure of the device-side build falls back to the CPU
        if torch.device(device).type == "cpu":
            raise
        print(f"building the stage on {device} failed ({type(error).__name__}: {error}); building on the CPU",
              flush=True)
        stage = STAGES[stage_cfg["name"]](stage=stage_cfg)
    return stage.to(device)


def i2v_batch(batch: int, frames: int, height: int, width: int, device: str) -> dict:
    """A random image-to-video training batch: clips in [-1, 1], fps_id 6 and motion bucket 127."""
    video = torch.rand(batch, frames, 3, height, width, device=device) * 2 - 1
    return {"video": video, "fps_id": torch.full((batch,), 6.0, device=device),
            "motion_bucket_id": torch.full((batch,), 127.0, device=device)}


def training_step(stage, optimizer, data: dict, dtype: torch.dtype = torch.bfloat16):
    """One training step as the Trainer runs it under `*-mixed` precision (`dtype` float32: no autocast): the loss
    under autocast, backward, the optimizer step, and the EMA update when the stage has EMA on
    (`DiffusionStage.optimizer_step`)."""
    device_type = data["video"].device.type

    def step(index: int) -> None:
        with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            loss = stage.compute_loss(data, index).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if stage.ema is not None:
            stage.ema.update()

    return step


def gpu_svd(steps: int, frames: int, height: int, width: int, batch: int, peak_tflops: float) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    stage = build_stage(i2v_stage_config(frames, height, width), "cuda")
    optimizer = torch.optim.AdamW(stage.trainable_parameters(), lr=3e-5)
    step = training_step(stage, optimizer, i2v_batch(batch, frames, height, width, "cuda"))
    stage.train()
    step(0)
    with FlopCounterMode(display=False) as counter:
        step(1)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for index in range(steps):
        step(index + 2)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    flops = counter.get_total_flops()
    return {"mode": "gpu svd i2v bf16 checkpointing", "device": torch.cuda.get_device_name(), "frames": frames,
            "size": [height, width], "batch": batch, "step_seconds": round(seconds, 4),
            "clips_per_second": round(batch / seconds, 3), "tflops_per_step": round(flops / 1e12, 2),
            "mfu": round(flops / seconds / (peak_tflops * 1e12), 4),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "unet_parameters": sum(p.numel() for p in stage.unet.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200)")
    parser.add_argument("--all-stages", action="store_true", help="CPU: every stage experiment's tiny run, timed")
    args = parser.parse_args()
    if args.device == "cpu" and args.all_stages:
        result = cpu_all_stages()
    elif args.device == "cpu":
        result = cpu_tiny(args.steps)
    else:
        result = gpu_svd(args.steps, args.frames, args.height, args.width, args.batch, args.peak_tflops)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

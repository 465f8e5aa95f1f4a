"""Convert a UNet or an autoencoder between the official single-file layout and a diffusers folder.

    python -m lightning_svd.models.convert SRC DST --to {official,diffusers} [--model unet|autoencoder]
                                           [--dtype same|float32|...] [--head-channels N]
                                           [--addition-time-embed-dim N]

SRC is anything `load_unet` (or `load_autoencoder`) reads: an official/ldm single file or a diffusers folder (a
pipeline folder works too: its unet/ or vae/). `--to official` writes DST as a .safetensors file under the
official prefix (`model.diffusion_model.*` or `first_stage_model.*`); `--to diffusers` writes DST as a folder
with config.json and diffusion_pytorch_model.safetensors (a pipeline's unet/ or vae/). A whole official SVD file
converts in two calls, one per model. Errors print one line and exit with code 2.
"""

import argparse
import sys

import torch

from lightning_svd.models.autoencoder_checkpoints import load_autoencoder, save_autoencoder
from lightning_svd.models.state_dict_io import CheckpointError
from lightning_svd.models.unet_checkpoints import load_unet, save_unet_diffusers, save_unet_official

DTYPES = {"same": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
LAYOUTS = ("diffusers", "official")
MODELS = ("unet", "autoencoder")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_svd.models.convert",
        description="Convert a UNet or an autoencoder between the official single-file layout and a diffusers folder.",
    )
    parser.add_argument("src", help="official/ldm .safetensors/.ckpt file, or a diffusers model or pipeline folder")
    parser.add_argument("dst", help="output .safetensors file (--to official) or folder (--to diffusers)")
    parser.add_argument("--to", required=True, choices=LAYOUTS, help="layout to write")
    parser.add_argument("--model", default="unet", choices=MODELS, help="which model of SRC to convert")
    parser.add_argument("--dtype", default="same", choices=list(DTYPES), help="tensor dtype of the output")
    parser.add_argument(
        "--addition-time-embed-dim",
        type=int,
        default=256,
        help="sinusoid channels per micro-conditioning scalar, written to a diffusers video config (SVD: 256)",
    )
    parser.add_argument(
        "--head-channels",
        type=int,
        help="channels per attention head of a single-file SRC (not stored in the file; default 64 as in SD 2.x/SVD)",
    )
    return parser.parse_args(argv)


def convert_unet(args: argparse.Namespace) -> str:
    overrides = {} if args.head_channels is None else {"head_channels": args.head_channels}
    unet = load_unet(args.src, dtype=DTYPES[args.dtype], **overrides)
    if args.to == "official":
        written = save_unet_official(unet, args.dst)
    else:
        written = save_unet_diffusers(unet, args.dst, args.addition_time_embed_dim)
    kind = "video" if unet.config.temporal else "image"
    return f"{kind} UNet ({sum(p.numel() for p in unet.parameters()):,} parameters) to {written}"


def convert_autoencoder(args: argparse.Namespace) -> str:
    if args.to == "official" and not str(args.dst).endswith(".safetensors"):
        raise CheckpointError(f"official autoencoder files are .safetensors; got {args.dst}")
    autoencoder = load_autoencoder(args.src, dtype=DTYPES[args.dtype])
    written = save_autoencoder(autoencoder, args.dst, layout=args.to)
    kind = "temporal-decoder" if autoencoder.temporal else "image"
    return f"{kind} autoencoder ({sum(p.numel() for p in autoencoder.parameters()):,} parameters) to {written}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = convert_unet(args) if args.model == "unet" else convert_autoencoder(args)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert a UNet between the official single-file layout and a diffusers folder.

    python -m lightning_svd.models.convert SRC DST --to {official,diffusers} [--dtype same|float32|...]
                                           [--head-channels N] [--addition-time-embed-dim N]

SRC is anything `load_unet` reads (official/ldm single file or diffusers folder). `--to official` writes DST as
a `model.diffusion_model.*` .safetensors file; `--to diffusers` writes DST as a folder with config.json and
diffusion_pytorch_model.safetensors. Errors print one line and exit with code 2.
"""

import argparse
import sys

import torch

from lightning_svd.models.state_dict_io import CheckpointError
from lightning_svd.models.unet_checkpoints import load_unet, save_unet_diffusers, save_unet_official

DTYPES = {"same": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
LAYOUTS = ("diffusers", "official")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_svd.models.convert",
        description="Convert a UNet between the official single-file layout and a diffusers folder.",
    )
    parser.add_argument("src", help="official/ldm .safetensors/.ckpt file, or a diffusers UNet folder")
    parser.add_argument("dst", help="output .safetensors file (--to official) or folder (--to diffusers)")
    parser.add_argument("--to", required=True, choices=LAYOUTS, help="layout to write")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = {} if args.head_channels is None else {"head_channels": args.head_channels}
        unet = load_unet(args.src, dtype=DTYPES[args.dtype], **overrides)
        if args.to == "official":
            written = save_unet_official(unet, args.dst)
        else:
            written = save_unet_diffusers(unet, args.dst, args.addition_time_embed_dim)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kind = "video" if unet.config.temporal else "image"
    print(f"wrote {kind} UNet ({sum(p.numel() for p in unet.parameters()):,} parameters) to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

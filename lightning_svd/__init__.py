"""lightning-svd: the Stable Video Diffusion recipe (Blattmann et al. 2023) as a PyTorch Lightning suite."""

__version__ = "0.1.0"

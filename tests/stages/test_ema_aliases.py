import io

import torch
from torch import nn

from lightning_svd.stages.checkpoints import averaged_state_dict


class Aliased(nn.Module):
    """Like a stage: the UNet reachable as `unet` and as `denoiser.network`."""

    def __init__(self):
        super().__init__()
        self.unet = nn.Linear(3, 2)
        self.denoiser = nn.Module()
        self.denoiser.network = self.unet
        self.other = nn.Linear(2, 2)


def test_ema_shadow_replaces_every_name_of_a_shared_tensor():
    model = Aliased()
    shadow = {"unet.weight": torch.full((2, 3), 7.0), "unet.bias": torch.full((2,), 7.0)}
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "ema": {"shadow": shadow}}, buffer)
    buffer.seek(0)
    state = averaged_state_dict(torch.load(buffer, weights_only=False))
    for key in ("unet.weight", "denoiser.network.weight", "unet.bias", "denoiser.network.bias"):
        assert torch.equal(state[key], shadow[key.replace("denoiser.network", "unet")]), key
    assert torch.equal(state["other.weight"], model.other.weight)

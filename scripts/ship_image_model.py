"""Ship the tiny recipe's image model with the code.

Trains the image model every ablation arm starts from exactly as `python run.py experiment=ablation_aesthetic` does
(or takes it from the cache), then writes its averaged UNet weights in SD's released layout to
`lightning_svd/ablation/weights/<key>.safetensors`, the name the ablation looks for before it trains one. Run it
after changing the tiny proxy recipe or the image model's corpus (the test
test_the_main_job_starts_every_arm_from_the_shipped_image_model says when the shipped file no longer matches); the
tiny recipe renders its 600-video corpus and trains for about 15 minutes on 2 cores.

    python scripts/ship_image_model.py [key=value ...]
"""

import logging
import sys
from pathlib import Path

from lightning_svd import training
from lightning_svd.ablation.variants import SHIPPED_IMAGE_MODELS, cached_image_model, image_model_config
from lightning_svd.config import load_config
from lightning_svd.models.state_dict_io import write_state_dict
from lightning_svd.quiet import silence_third_party
from lightning_svd.run_context import RunContext
from lightning_svd.stages.checkpoints import released_unet_weights


def main(overrides: list[str]) -> Path:
    silence_third_party()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("ship_image_model")
    cfg = load_config("ablation_aesthetic", "tiny", overrides, check_paths=False)
    if cfg.ablation.image_init.data != "corpus":
        raise SystemExit("error: only an image model trained on a corpus of its own ships; drop "
                         f"ablation.image_init.data={cfg.ablation.image_init.data} (the shipped one uses corpus)")
    model = image_model_config(cfg, None, int(cfg.ablation.image_init.seed))
    folder = cached_image_model(cfg, RunContext(Path(str(cfg.cache_dir)).expanduser(), log), None, model)
    SHIPPED_IMAGE_MODELS.mkdir(exist_ok=True)
    for old in SHIPPED_IMAGE_MODELS.glob("*.safetensors"):
        old.unlink()
    shipped = write_state_dict(released_unet_weights(training.last_checkpoint(folder)),
                               SHIPPED_IMAGE_MODELS / f"{folder.name}.safetensors")
    log.info(f"shipped: {shipped} ({shipped.stat().st_size / 1e6:.1f} MB), from {folder}")
    return shipped


if __name__ == "__main__":
    main(sys.argv[1:])

"""The proxies' training configs: the proxy experiment, the recipe blocks over it, then key=value overrides.

`ablation.proxy` (the arms' recipe), `ablation.image_init.pretrain` (what the image model changes on top of it) and
`ablation.stage3.finetune` (what the stage III ablation's finetuning arms change) are nested mappings set key by key
through the config loader, so an unknown key or a value of the wrong type fails with the loader's one-line message,
prefixed by the block that holds it. `ablation.extra_proxy_overrides` and what an arm changes come last, as
`key=value` strings.
"""

from omegaconf import DictConfig, OmegaConf

from lightning_svd.config import apply_block, apply_override, check_resolves, load_config
from lightning_svd.config_checks import check_ranges
from lightning_svd.errors import UserError


def apply_recipe(proxy: DictConfig, block, name: str) -> None:
    """Set `block` (a mapping, or None for none) over `proxy`; errors name the block, e.g. `ablation.proxy`."""
    if block is None:
        return
    try:
        apply_block(proxy, OmegaConf.to_container(block, resolve=True))
    except UserError as error:
        raise UserError(f"{name}: {error}") from None


def proxy_recipe(cfg, image: bool = False, arm_overrides=(), finetune: bool = False) -> DictConfig:
    """The proxy experiment with `ablation.proxy`, then `ablation.image_init.pretrain` (for the image model) or
    `ablation.stage3.finetune` (for stage III finetuning), then `ablation.extra_proxy_overrides` and the arm's own
    overrides."""
    section = cfg.ablation
    proxy = load_config(section.proxy_experiment, cfg.profile, check_paths=False)
    apply_recipe(proxy, section.proxy, "ablation.proxy")
    if image:
        apply_recipe(proxy, section.image_init.pretrain, "ablation.image_init.pretrain")
    if finetune:
        apply_recipe(proxy, section.stage3.finetune, "ablation.stage3.finetune")
    for override in [*section.extra_proxy_overrides, *arm_overrides]:
        apply_override(proxy, override)
    check_resolves(proxy)
    try:
        check_ranges(proxy)
    except UserError as error:
        raise UserError(f"the proxies' config (ablation.proxy and the blocks and overrides over it): {error}") from None
    return proxy

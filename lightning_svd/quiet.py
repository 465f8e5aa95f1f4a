"""Keep the terminal for what matters: silence third-party messages that tell a user of this suite nothing.

Each entry names a message we have read and judged: Lightning's advert for its cloud logger and its hardware
inventory, deprecation notices inside Lightning itself, a logging-interval hint that short proxy runs always
trigger, the notice about frozen modules in eval mode (our text towers and EMA copies are frozen on purpose), the
`weights_only` default when Lightning reloads our own checkpoints, the "max_steps reached" line (our log says how
many steps ran), Lightning's "Using bfloat16 Automatic Mixed Precision" (the config names the precision), and
open_clip's "No pretrained weights loaded" for towers we build on random weights deliberately (every output that
depends on them says so in our own words). Anything not listed still reaches the terminal.
"""

import logging
import warnings

QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
    r"Found \d+ module\(s\) in eval mode at the start of training.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*`weights_only` was not set, defaulting to `False`.*",
)
QUIET_LOG_MESSAGES = (
    "💡 Tip: For seamless cloud logging",
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "No pretrained weights loaded for model",
    "`Trainer.fit` stopped: `max_steps=",
    "`weights_only` was not set, defaulting to `False`.",
    "Using bfloat16 Automatic Mixed Precision (AMP)",
)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning.pytorch.trainer.connectors.checkpoint_connector")


class _DropKnownMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(prefix) for prefix in QUIET_LOG_MESSAGES)


def silence_third_party() -> None:
    """Install the filters (idempotent): warnings by message, log records by prefix on the loggers that emit them."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("", *LIGHTNING_LOGGERS):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropKnownMessages) for existing in logger.filters):
            logger.addFilter(_DropKnownMessages())

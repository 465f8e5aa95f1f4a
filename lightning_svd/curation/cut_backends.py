"""The cut detector `curation.cuts.backend` names: the cascade (default) or TransNetV2. Kept apart from both so
neither imports the other (TransNetV2 gives the cascade's `Cut` records)."""

from .cuts import CutCascade

CUT_BACKENDS = ("cascade", "transnetv2")


def build_cut_detector(node: dict):
    """The detector `curation.cuts.backend` names; each has `detect(frames_rgb, times) -> list[Cut]`."""
    backend = node.get("backend", "cascade")
    if backend == "cascade":
        return CutCascade.from_config(node)
    if backend == "transnetv2":
        from .transnet import TransNetV2Cuts  # the TransNetV2 package loads only when asked for

        return TransNetV2Cuts.from_config(node)
    raise ValueError(f"curation.cuts.backend must be {' or '.join(CUT_BACKENDS)}, got {backend!r}")

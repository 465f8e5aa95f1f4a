"""The caption stage: every configured captioner fills its own column, and `<column>_model` says what wrote it.

Captioners (SVD App. C, plus captions a dataset already has): `sidecar` (files beside the video, `captions.py`),
`coca` (open_clip CoCa on the middle frame, `coca.py`), `vblip` (VideoBLIP over frames spread across the clip) and
`llm` (a causal LM merging the other captions), both in `transformers_captions.py`. The LLM runs last, on the
captions the others wrote. Models are built on first use, so workers without a model captioner never import torch.
"""

import numpy as np

from .captions import SidecarCaptioner
from .clips import ClipSpan
from .local_models import LocalModelFolder

RANDOM_INPUTS_NOTE = "; its inputs include captions from random weights"


class CaptionStage:
    """Built from the `curation.captions` config; validates it up front so a bad setting fails before any video."""

    def __init__(self, cfg: dict):
        self.sidecar = SidecarCaptioner() if (cfg.get("sidecar") or {}).get("enabled") else None
        self.coca_cfg = dict(cfg.get("coca") or {})
        self.vblip_cfg = dict(cfg.get("vblip") or {})
        self.llm_cfg = dict(cfg.get("llm") or {})
        if self.coca_cfg.get("enabled") and not self.coca_cfg.get("weights"):
            raise ValueError("curation.captions.coca.weights: CoCa needs a local checkpoint; set it or turn "
                             "curation.captions.coca.enabled off")
        for name, settings in (("vblip", self.vblip_cfg), ("llm", self.llm_cfg)):
            if settings.get("enabled"):
                LocalModelFolder(settings.get("model"), f"curation.captions.{name}.model",
                                 bool(settings.get("random_weights", False)))
        self.vblip_frames = int(self.vblip_cfg.get("num_frames", 8))
        if self.vblip_frames < 1:
            raise ValueError(f"curation.captions.vblip.num_frames must be at least 1, got {self.vblip_frames}")
        if self.llm_cfg.get("enabled"):
            self._check_llm_inputs(list(self.llm_cfg.get("inputs") or []))
        self._models: dict[str, object] = {}

    def _check_llm_inputs(self, inputs: list[str]) -> None:
        on = {"caption_sidecar": self.sidecar is not None, "caption_coca": bool(self.coca_cfg.get("enabled")),
              "caption_vblip": bool(self.vblip_cfg.get("enabled"))}
        valid = sorted(on)
        if not inputs or any(column not in valid for column in inputs):
            raise ValueError(f"curation.captions.llm.inputs must list caption columns from {valid}, got {inputs}")
        off = [column for column in inputs if not on[column]]
        if off:
            raise ValueError(f"curation.captions.llm.inputs: {off} come from captioners that are off; enable them "
                             "or drop them from the inputs")

    @property
    def uses_torch(self) -> bool:
        return any(settings.get("enabled") for settings in (self.coca_cfg, self.vblip_cfg, self.llm_cfg))

    def frames_needed(self, span: ClipSpan, times: np.ndarray) -> list[int]:
        """Full-size frames the model captioners read: the middle frame (CoCa), frames across the clip (VideoBLIP)."""
        wanted = []
        if self.coca_cfg.get("enabled"):
            wanted.append(span.key_frames(times)[1])
        if self.vblip_cfg.get("enabled"):
            wanted += span.frames_across(self.vblip_frames, times)
        return wanted

    def coca(self):
        if "coca" not in self._models:
            from .coca import CocaCaptioner

            c = self.coca_cfg
            self._models["coca"] = CocaCaptioner(c["model"], c["weights"], c.get("device", "cpu"), c.get("config_file"),
                                                 int(c.get("max_tokens", 30)))
        return self._models["coca"]

    def vblip(self):
        if "vblip" not in self._models:
            from .transformers_captions import VideoBlipCaptioner

            c = self.vblip_cfg
            self._models["vblip"] = VideoBlipCaptioner(
                c["model"], bool(c.get("random_weights", False)), self.vblip_frames, c.get("prompt") or "",
                int(c.get("max_new_tokens", 30)), c.get("device", "cpu"))
        return self._models["vblip"]

    def llm(self):
        if "llm" not in self._models:
            from .transformers_captions import DEFAULT_MERGE_PROMPT, LlmCaptionMerger

            c = self.llm_cfg
            self._models["llm"] = LlmCaptionMerger(
                c["model"], list(c["inputs"]), bool(c.get("random_weights", False)),
                c.get("prompt") or DEFAULT_MERGE_PROMPT, int(c.get("max_new_tokens", 40)), c.get("device", "cpu"))
        return self._models["llm"]

    def fill(self, rows: list[dict], spans: list[ClipSpan], frames: dict[int, np.ndarray], video_path: str,
             times: np.ndarray) -> list[str]:
        """Write every enabled caption column of `rows` (one row per span) and its `<column>_model` label; return
        warnings about the video (sidecar files that could not be read)."""
        warnings = []
        if self.sidecar is not None:
            captions, warnings = self.sidecar.captions(video_path, [(s.start_frame, s.end_frame) for s in spans],
                                                       times)
            self._put(rows, "caption_sidecar", captions, "sidecar caption files beside the video")
        if self.coca_cfg.get("enabled"):
            middles = [frames[span.key_frames(times)[1]] for span in spans]
            self._put(rows, "caption_coca", self.coca().captions(middles), self.coca().describe())
        if self.vblip_cfg.get("enabled"):
            clips = [[frames[i] for i in span.frames_across(self.vblip_frames, times)] for span in spans]
            self._put(rows, "caption_vblip", self.vblip().captions(clips), self.vblip().describe())
        if self.llm_cfg.get("enabled"):
            merger = self.llm()
            self._put(rows, "caption_llm", merger.captions(rows), merger.describe())
            for row in rows:
                if row["caption_llm"] is not None and any(
                        "random weights" in (row.get(f"{c}_model") or "") for c in merger.inputs if row.get(c)):
                    row["caption_llm_model"] += RANDOM_INPUTS_NOTE
        return warnings

    @staticmethod
    def _put(rows: list[dict], column: str, captions: list[str | None], label: str) -> None:
        for row, caption in zip(rows, captions, strict=True):
            row[column] = caption
            row[f"{column}_model"] = label if caption is not None else None

"""VideoBLIP captions and an LLM merge of the captions, through `transformers` (columns `caption_vblip`, `caption_llm`).

SVD App. C captions every clip three ways: CoCa on the middle frame, VideoBLIP on the clip, and a lightweight LLM
that summarises the two. The paper names neither the VideoBLIP checkpoint nor the LLM, its prompt or the frame count,
so all of them are config.

- VideoBLIP is a BLIP-2 model (`Blip2ForConditionalGeneration`) over several frames: every frame goes through the
  vision encoder, the patch embeddings of all frames are joined along the sequence axis, and the Q-Former's query
  tokens attend to that whole sequence; its projected outputs, followed by the embedded prompt, start greedy
  decoding in the language model. Released VideoBLIP checkpoints keep BLIP-2's parameter names, so they load here.
- The LLM is any causal LM (`AutoModelForCausalLM`) prompted with the clip's captions (a chat template is applied
  when the tokenizer has one) and decoded greedily; the first line of its answer is the merged caption.

Models load from local folders in the `save_pretrained` layout only (config, weights, tokenizer, image processor),
never from the Hub. `random_weights: true` builds the folder's architecture with random weights (seed 0) instead, for
checks of the pipeline; every caption that comes from them is labelled so in its `<column>_model` column.
"""

import numpy as np
import torch

from .local_models import LocalModelFolder


class VideoBlipCaptioner:
    """One caption per clip from a BLIP-2 model over `num_frames` frames spread across the clip."""

    column = "caption_vblip"

    def __init__(self, model: str | None, random_weights: bool = False, num_frames: int = 8, prompt: str = "",
                 max_new_tokens: int = 30, device: str = "cpu"):
        from transformers import AutoImageProcessor, Blip2ForConditionalGeneration

        self.folder = LocalModelFolder(model, "curation.captions.vblip.model", random_weights)
        self.model = self.folder.build(Blip2ForConditionalGeneration, device)
        self.image_processor = AutoImageProcessor.from_pretrained(model, local_files_only=True)
        self.tokenizer = self.folder.tokenizer()
        self.num_frames, self.prompt, self.max_new_tokens, self.device = num_frames, prompt, max_new_tokens, device

    def describe(self) -> str:
        return self.folder.describe("Blip2ForConditionalGeneration", f"(VideoBLIP, {self.num_frames} frames)")

    @torch.inference_mode()
    def captions(self, clips: list[list[np.ndarray]]) -> list[str]:
        """One caption per clip, from that clip's frames (RGB uint8)."""
        return [self._caption(frames) for frames in clips]

    def _caption(self, frames: list[np.ndarray]) -> str:
        model = self.model
        pixels = self.image_processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        patches = model.vision_model(pixel_values=pixels.to(model.dtype)).last_hidden_state
        video = patches.reshape(1, -1, patches.shape[-1])
        queries = model.qformer(
            query_embeds=model.query_tokens, encoder_hidden_states=video,
            encoder_attention_mask=torch.ones(video.shape[:2], dtype=torch.long, device=self.device),
        ).last_hidden_state
        visual = model.language_projection(queries.to(model.language_projection.weight.dtype))
        prompt_ids = self.tokenizer(self.prompt, return_tensors="pt")["input_ids"].to(self.device)
        embedded = model.language_model.get_input_embeddings()(prompt_ids)
        inputs = torch.cat([visual.to(embedded.dtype), embedded], dim=1)
        generated = model.language_model.generate(
            inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long, device=self.device),
            max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
        )
        return self.tokenizer.decode(generated[0], skip_special_tokens=True).strip()


DEFAULT_MERGE_PROMPT = ("Here are descriptions of one short video clip:\n{captions}\n"
                        "Write one sentence that describes the clip and combines them.\nCaption:")


class LlmCaptionMerger:
    """One caption per clip from a causal LM prompted with the clip's captions in `inputs` (null where all are)."""

    column = "caption_llm"

    def __init__(self, model: str | None, inputs: list[str], random_weights: bool = False,
                 prompt: str = DEFAULT_MERGE_PROMPT, max_new_tokens: int = 40, device: str = "cpu"):
        from transformers import AutoModelForCausalLM

        if "{captions}" not in prompt:
            raise ValueError("curation.captions.llm.prompt must contain {captions} (where the captions go)")
        self.folder = LocalModelFolder(model, "curation.captions.llm.model", random_weights)
        self.model = self.folder.build(AutoModelForCausalLM, device)
        self.tokenizer = self.folder.tokenizer(padding_side="left")
        self.inputs, self.prompt, self.max_new_tokens, self.device = list(inputs), prompt, max_new_tokens, device

    def describe(self) -> str:
        return self.folder.describe(type(self.model).__name__, f"(LLM merge of {' + '.join(self.inputs)})")

    def prompt_for(self, captions: list[str]) -> str:
        text = self.prompt.format(captions="\n".join(f"- {caption}" for caption in captions))
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text

    @torch.inference_mode()
    def captions(self, rows: list[dict]) -> list[str | None]:
        """The merged caption of every row that has at least one input caption, else None."""
        sources = [[row[c] for c in self.inputs if row.get(c)] for row in rows]
        wanted = [i for i, captions in enumerate(sources) if captions]
        merged: list[str | None] = [None] * len(rows)
        if not wanted:
            return merged
        batch = self.tokenizer([self.prompt_for(sources[i]) for i in wanted], return_tensors="pt", padding=True,
                               add_special_tokens=not getattr(self.tokenizer, "chat_template", None)).to(self.device)
        generated = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                        pad_token_id=self.tokenizer.pad_token_id)
        answers = self.tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, answer in zip(wanted, answers):
            lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
            merged[i] = lines[0] if lines else ""
        return merged

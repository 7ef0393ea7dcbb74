"""Carries the MiniLM text encoder to a lent GPU machine inside its 64 MiB working-tree limit.

MiniLM's own weights (88 MB) do not fit beside the repo (49 MB). This packs a copy that does (~11 MB):
  * the word-embedding table keeps only the rows of word pieces that toy-world captions use (sampled captions of
    every kind, their twins' swapped words and the whole caption vocabulary), in fp16;
    every other row is NaN on unpacking, so a caption with an unseen piece poisons its embedding loudly;
  * the transformer layers' weight matrices are int8 with one fp16 scale per 32 inputs; the rest is fp16.
Both ends run here: `pack` measures the unpacked copy against the real encoder on held-back captions and says
how close it is (training on the GPU then sees that error in its prompt embeddings; sampling at home uses the
real encoder).

    python tools/travel_minilm.py pack .devcarry/minilm_toy        # here
    python tools/travel_minilm.py unpack .devcarry/minilm_toy /tmp/minilm_toy   # there: a full HF folder
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WORD_ROWS = "embeddings.word_embeddings.weight"


def toy_captions(n_scenes: int, seed: int) -> list[str]:
    """Every caption form training uses: the clip caption kinds, paraphrases and the twins' word swaps."""
    from cinegen.toyworld import world
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_scenes):
        scene = world.random_scene(rng)
        out += [world.canonical_caption(scene), world.paraphrase_caption(scene, rng)]
    vocab = [*world.COLOURS, *world.SHAPES, *world.SIZES, *world.MOTIONS, *world.BACKGROUNDS, *world.CAMERAS,
             *sum(world._MOTION_PARAPHRASE.values(), []), *sum(world._SHAPE_PARAPHRASE.values(), []),
             *sum(world._BG_PARAPHRASE.values(), []), "they collide", "passing behind a wall", "camera"]
    return out + [" ".join(vocab)]


GROUP = 32       # input columns sharing one int8 scale: 6% more bytes than one scale per row, a third of the error


def _quantise(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = w.unflatten(1, (-1, GROUP))                                             # (out, in/G, G)
    scale = g.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / 127.0          # (out, in/G, 1)
    return torch.round(g / scale).to(torch.int8).flatten(1), scale.half()       # (out, in), (out, in/G, 1)


def pack(dst: Path) -> None:
    from transformers import AutoTokenizer

    from cinegen.models.text_encoder import resolve_model_dir
    src = resolve_model_dir("minilm")
    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    ids = sorted({i for c in toy_captions(20000, 0) for i in tok(c)["input_ids"]} | set(tok.all_special_ids))
    weights = load_file(src / "model.safetensors")
    packed = {"kept_ids": torch.tensor(ids), WORD_ROWS: weights[WORD_ROWS][ids].half()}
    for name, w in weights.items():
        if name == WORD_ROWS:
            continue
        if w.ndim == 2 and ".layer." in name:
            packed[name + ".int8"], packed[name + ".scale"] = _quantise(w.float())
        else:
            packed[name] = w.half()
    dst.mkdir(parents=True, exist_ok=True)
    save_file(packed, dst / "packed.safetensors")
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, dst / f)
    print(f"{len(ids)} word pieces kept; {(dst / 'packed.safetensors').stat().st_size / 1e6:.1f} MB")
    _compare(src, dst)


def unpack(src: Path, dst: Path, vocab_size: int | None = None) -> Path:
    packed = load_file(src / "packed.safetensors")
    ids = packed.pop("kept_ids")
    out = {}
    for name, w in packed.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".int8"):
            base = name[: -len(".int8")]
            out[base] = (w.float().unflatten(1, (-1, GROUP)) * packed[base + ".scale"].float()).flatten(1)
        elif name != WORD_ROWS:
            out[name] = w.float()
    import json
    n = vocab_size or json.loads((src / "config.json").read_text())["vocab_size"]
    table = torch.full((n, packed[WORD_ROWS].shape[1]), float("nan"))
    table[ids] = packed[WORD_ROWS].float()
    out[WORD_ROWS] = table
    dst.mkdir(parents=True, exist_ok=True)
    save_file(out, dst / "model.safetensors")
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, dst / f)
    return dst


def _compare(real_dir: Path, packed_dir: Path) -> None:
    """Relative error and cosine of the unpacked encoder's token embeddings against the real one."""
    import tempfile

    from cinegen.config import TextConfig
    from cinegen.models.text_encoder import TextEncoder
    captions = toy_captions(300, 99)[:-1]                      # scenes not used to pick the kept rows
    with tempfile.TemporaryDirectory() as tmp:
        copy = TextEncoder(TextConfig(name=str(unpack(packed_dir, Path(tmp)))))
        real = TextEncoder(TextConfig(name=str(real_dir)))
        a, mask = real.encode(captions)
        b, _ = copy.encode(captions)
    a, b = a[mask], b[mask]                                      # (tokens, Dt)
    rel = float((a - b).norm() / a.norm())
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    print(f"unpacked vs real MiniLM on {len(captions)} unseen captions: relative error {rel:.4f}, "
          f"token cosine min {cos.min():.4f} mean {cos.mean():.5f}; NaN tokens {int(b.isnan().any(-1).sum())}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"]:
        pack(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["unpack"]:
        print(unpack(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)

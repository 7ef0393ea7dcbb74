import pytest
import torch

from cinegen.config import TextConfig
from cinegen.models.text_encoder import TextEncoder, pad_embeddings


def test_minilm_loads_offline_and_gives_per_token_embeddings(text_encoder):
    emb, mask = text_encoder.encode(["a large red ball bounces on a black background", "", "a box"])
    assert emb.shape[0] == 3 and emb.shape[2] == 384 and mask.dtype == torch.bool
    assert mask[0].sum() > mask[2].sum() > mask[1].sum() >= 2           # [CLS] [SEP] even for the empty prompt
    assert torch.all(emb[~mask] == 0)


def test_embeddings_are_meaningful_and_cached(text_encoder):
    emb, mask = text_encoder.encode(["a red ball", "a red ball", "a blue box falls"])
    assert torch.equal(emb[0], emb[1]) and not torch.allclose(emb[0], emb[2][: emb.shape[1]])
    assert "a red ball" in text_encoder._cache


def test_long_prompts_are_truncated(text_encoder):
    emb, mask = text_encoder.encode(["ball " * 200])
    assert mask.sum() == text_encoder.cfg.max_tokens


def test_local_path_must_be_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match="local Hugging Face"):
        TextEncoder(TextConfig(name=str(tmp_path)))


def test_pad_embeddings():
    out, mask = pad_embeddings([torch.ones(2, 3), torch.ones(4, 3)])
    assert out.shape == (2, 4, 3) and mask.tolist() == [[True, True, False, False], [True] * 4]


def test_any_local_hugging_face_encoder_folder(tmp_path):
    """A user's own encoder (T5, BERT, ...) loads from a local folder; here a tiny random BERT saved with
    save_pretrained next to the shipped tokenizer."""
    import shutil

    from transformers import BertConfig, BertModel

    from cinegen.models.text_encoder import resolve_model_dir
    minilm = resolve_model_dir("minilm")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, tmp_path / name)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path)
    enc = TextEncoder(TextConfig(name=str(tmp_path), dim=32))
    emb, mask = enc.encode(["a red ball"])
    assert emb.shape[-1] == 32 and mask.sum() >= 3
    with pytest.raises(ValueError, match="width 32"):
        TextEncoder(TextConfig(name=str(tmp_path), dim=384))


def test_tokens_from_several_layers_are_laid_end_to_end(text_encoder):
    both = TextEncoder(TextConfig(layers=(-1, 0)))
    emb, mask = both.encode(["a red ball moves left", "a box"])
    last, last_mask = text_encoder.encode(["a red ball moves left", "a box"])
    n = int(last_mask[0].sum())
    assert mask.sum(1).tolist() == (2 * last_mask.sum(1)).tolist()
    assert torch.allclose(emb[0, :n], last[0, :n], atol=1e-5)            # the contextual tokens come first
    left, _ = both.encode(["a red ball moves right"])
    # word-embedding tokens carry no context: only the changed word differs there
    differs = ~torch.isclose(emb[0, n:2 * n], left[0, n:2 * n], atol=1e-5).all(-1)
    assert differs.sum() == 1


def test_text_layers_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"layers \[9\]"):
        TextEncoder(TextConfig(layers=(9,)))


def test_the_disk_cache_serves_a_new_encoder_without_loading_the_model(tmp_path):
    """A prompt seen before embeds bit for bit as the model made it, in a new process's encoder that never loads
    the model (nor imports transformers); the cache stays under its size bound; a broken file is a miss."""
    from cinegen.models.text_encoder import TextCache
    first = TextEncoder(disk_cache=TextCache(tmp_path))
    emb, mask = first.encode(["a red ball", "", "a blue box moves left"])
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    again = TextEncoder(disk_cache=TextCache(tmp_path))
    emb2, mask2 = again.encode(["a red ball", "", "a blue box moves left"])
    assert again._model is None and torch.equal(emb, emb2) and torch.equal(mask, mask2)
    alone = TextEncoder(disk_cache=None).encode(["a blue box moves left"])[0][0]
    assert torch.equal(alone, emb[2, :alone.shape[0]])       # batch mates do not move a prompt's embedding
    broken = next(iter(tmp_path.glob("*.safetensors")))
    broken.write_bytes(b"not a safetensors file")
    third = TextEncoder(disk_cache=TextCache(tmp_path))
    assert torch.equal(third.encode(["a red ball", "", "a blue box moves left"])[0], emb)
    small = TextCache(tmp_path / "small", max_bytes=20_000)    # room for one embedding of ~14 KB
    TextEncoder(disk_cache=small).encode(["a red ball on a gray background", "a green disc falls on a sky background"])
    assert len(list((tmp_path / "small").glob("*.safetensors"))) == 1


def test_the_disk_cache_can_be_moved_or_turned_off(tmp_path, monkeypatch):
    from cinegen.models.text_encoder import TextCache
    monkeypatch.setenv("CINEGEN_TEXT_CACHE", "0")
    assert TextCache.default() is None
    monkeypatch.setenv("CINEGEN_TEXT_CACHE", str(tmp_path))
    assert TextCache.default().folder == tmp_path


def test_overflow_counts_with_the_tokenizer_file_as_the_hugging_face_tokenizer_does(text_encoder):
    """overflow reads tokenizer.json with `tokenizers` alone (no transformers import at start-up); it must count and
    cut exactly as the Hugging Face tokenizer the encoder embeds with."""
    from cinegen.models.text_encoder import _HFCounter
    hf = _HFCounter(text_encoder.tokenizer)
    prompts = ["a large red ball bounces on a black background", "Ünïcödé café — naïve 東京 🎬", "", "x" * 300,
               " ".join(["a purple triangle spins on a sky background and"] * 9), "don't   stop\tthe\nmusic, ok?!"]
    fast = [text_encoder.overflow(p) for p in prompts]
    try:
        text_encoder._counter = hf
        assert [text_encoder.overflow(p) for p in prompts] == fast
    finally:
        text_encoder._counter = None
    assert fast[4][0] > text_encoder.cfg.max_tokens and fast[4][1].startswith("spins")


def test_a_cached_prompt_is_checked_and_embedded_without_importing_transformers(tmp_path):
    """What a cold `cinegen generate` of a prompt seen before does with its text: the window check and the
    embedding, in a fresh process that must not import transformers (about 1 s of start-up)."""
    import subprocess
    import sys

    from cinegen.models.text_encoder import TextCache
    TextEncoder(disk_cache=TextCache(tmp_path)).encode(["a red ball"])
    code = ("import sys; from cinegen.models.text_encoder import TextEncoder, TextCache; "
            f"e = TextEncoder(disk_cache=TextCache({str(tmp_path)!r})); e.overflow('a red ball'); e.encode(['a red ball']); "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "False"

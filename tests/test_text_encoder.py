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

"""config parsers: the one place a CLI/board/server value is read and checked."""

import pytest


def test_parse_lora_reads_file_and_scale_and_names_a_bad_value():
    from cinegen.config import LoraSpec, parse_lora
    assert parse_lora("style.safetensors") == LoraSpec("style.safetensors", 1.0)
    assert parse_lora("a/style.safetensors:0.5") == LoraSpec("a/style.safetensors", 0.5)
    assert parse_lora("dir:x/style.safetensors") == LoraSpec("dir:x/style.safetensors", 1.0)
    for bad in ("style.safetensors:strong", "style.safetensors:99", ":0.5"):
        with pytest.raises(ValueError, match="bad --lora"):
            parse_lora(bad)

"""Open weights from a local Diffusers folder: a tiny randomly initialised Wan2.1 pipeline, saved with
save_pretrained and run back through `cinegen generate --model`. Nothing is downloaded."""

import pytest

pytest.importorskip("diffusers")


def test_generate_through_a_local_wan_pipeline(tiny_wan_dir, tmp_path):
    import av
    from typer.testing import CliRunner

    from cinegen.cli import app
    out = tmp_path / "wan.mp4"
    r = CliRunner().invoke(app, ["generate", "a red ball bounces", "--model", str(tiny_wan_dir), "--size", "32x32",
                                 "--seconds", "1", "--steps", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (32, 32) and sum(1 for _ in c.decode(v)) == 9
        assert c.metadata["model"] == str(tiny_wan_dir)


def test_wan_generate_is_deterministic_and_modes_refuse(tiny_wan_dir, tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from cinegen import requests as R
    from cinegen.backends import load_backend
    from cinegen.cli import app
    from cinegen.config import SampleConfig
    backend = load_backend(tiny_wan_dir, device="cpu")
    cfg = SampleConfig(seconds=1, width=32, height=32, steps=2, seed=3)
    seen = []
    a = backend.generate(R.Text(prompt="a blue box", sample=cfg), progress=seen.append)
    b = backend.generate(R.Text(prompt="a blue box", sample=cfg))
    assert a.shape == (9, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert [(d["phase"], d["step"], d["steps"]) for d in seen] == [("sampling", 1, 2), ("sampling", 2, 2)]
    with pytest.raises(ValueError, match="multiple of 16"):
        backend.generate(R.Text(prompt="a blue box", sample=SampleConfig(width=30)))
    with pytest.raises(ValueError, match="guidance_high=6.0 applies to cinegen models"):
        backend.generate(R.Text(prompt="a blue box", sample=SampleConfig(guidance_high=6.0)))   # not silently ignored
    (tmp_path / "s.png").write_bytes(b"")
    from PIL import Image
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "s.png")
    r = CliRunner().invoke(app, ["animate", str(tmp_path / "s.png"), "a red ball", "--model", str(tiny_wan_dir)])
    assert r.exit_code == 2 and "cannot do 'animate'; it can do: text" in r.output

"""cinegen eval-vae: several autoencoders scored on the same held-out clips, paired with the first."""

import json

import numpy as np
import torch

from cinegen.config import VAE_PRESETS
from cinegen.eval.reconstruction import summarise
from cinegen.models.vae import VideoVAE
from cinegen.toyworld.source import sample_of
from cinegen.toyworld.world import ObjectSpec, SceneSpec, render_scene
from cinegen.training.checkpoint import save_checkpoint
from cinegen.training.metrics import clip_psnrs, psnr
from tests.test_train import _cli


def test_psnr_of_a_known_error():
    a = torch.zeros(1, 3, 1, 4, 4)
    assert abs(psnr(a, a + 0.02) - 10 * np.log10(4 / 0.02 ** 2)) < 1e-6        # 40 dB


def test_summary_by_background_and_pairing():
    clips = [sample_of(render_scene(SceneSpec(objects=(ObjectSpec("red", "ball", "large", "stays still"),),
                                              background=bg), 32, 32, 1), np.random.default_rng(0))
             for bg in ("black", "black", "gray")]
    row = summarise(clips, [20.0, 22.0, 30.0], reference=[20.0, 21.0, 29.0])
    assert row["psnr"] == 24.0 and row["by_background"] == {"black": {"psnr": 21.0, "clips": 2},
                                                            "gray": {"psnr": 30.0, "clips": 1}}
    assert abs(row["vs_first"]["mean"] - 2 / 3) < 1e-9 and row["vs_first"]["se"] > 0


def test_latent_shift_is_the_relative_rms_change():
    from cinegen.eval.reconstruction import latent_shift
    ref = [torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 1, 3, 3)]
    assert latent_shift(ref, ref) == 0.0
    assert abs(latent_shift([2 * r for r in ref], ref) - 1.0) < 1e-6
    assert abs(latent_shift([-r for r in ref], ref) - 2.0) < 1e-6


def test_eval_vae_cli_pairs_files_on_the_same_clips(tiny_model_dir, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    vae = VideoVAE(VAE_PRESETS["tiny"])
    save_checkpoint(other, "vae", vae.cfg, vae)
    first = tiny_model_dir / "vae.safetensors"
    report = tmp_path / "r.json"
    r = _cli("eval-vae", str(first), str(first), str(other), "--num-clips", "3", "--bucket", "5x32x32", "--out", str(report))
    assert r.returncode == 0, r.stderr
    rows = json.loads(report.read_text())["rows"]
    assert rows[0]["clip_psnr"] == rows[1]["clip_psnr"] and rows[1]["vs_first"]["mean"] == 0.0
    assert rows[2]["clip_psnr"] != rows[0]["clip_psnr"] and len(rows[2]["clip_psnr"]) == 3
    # how far each file moved the latent space the first one's DiTs learned: none for the same file
    assert "latent_shift" not in rows[0] and rows[1]["latent_shift"] == 0.0 and rows[2]["latent_shift"] > 0.1
    assert sum(b["clips"] for b in rows[0]["by_background"].values()) == 3
    r = _cli("eval-vae", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "VAE file not found" in r.stderr and "missing.safetensors" in r.stderr.replace("\n", "")
    r = _cli("eval-vae", str(tiny_model_dir / "dit.safetensors"), "--num-clips", "1", "--bucket", "5x32x32")
    assert r.returncode == 2 and "not a VAE" in r.stderr and "Traceback" not in r.stderr


def test_clip_psnrs_match_a_direct_round_trip(tiny_model_dir):
    from cinegen.io.video import video_to_tensor
    from cinegen.models.loading import load_vae
    vae = load_vae(tiny_model_dir / "vae.safetensors")
    clip = render_scene(SceneSpec(objects=(ObjectSpec("blue", "box", "small", "moves left"),)), 32, 32, 5)
    x = video_to_tensor(clip.video)[None]
    with torch.no_grad():
        direct = psnr(vae.decode(vae.encode(x)), x)
    assert clip_psnrs(vae, [clip], "cpu") == [direct]

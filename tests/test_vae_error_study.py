"""scripts/vae_error_study.py: the object region covers every drawn object pixel, and the block-PCA yardstick is
exact with every component and worse with fewer."""

import numpy as np
import pytest

from cinegen.data.world import random_clip


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("vae_error_study")


def test_object_region_covers_the_drawn_objects(study):
    checked = 0
    for seed in range(40):
        clip = random_clip(np.random.default_rng(seed))
        if clip.scene.background != "black" or clip.scene.occluder:
            continue
        checked += 1
        drawn = clip.video.max(axis=-1) > 0                      # (T, H, W): any non-black pixel is an object
        near = study.object_region(clip)
        assert near[drawn].all(), f"seed {seed}: drawn pixels outside the object region"
        assert near.mean() < 0.6, "the region should leave most of the frame out"
    assert checked >= 5


def test_pca_reference_exact_with_all_components_and_worse_with_few(study):
    rng = np.random.default_rng(0)
    clips = [random_clip(rng) for _ in range(8)]
    row = study.pca_reference(clips, clips, ks=(4, 768))
    for bg, by_k in row.items():
        assert by_k[768] > 60, f"{bg}: all 768 components should reconstruct the fitted blocks (got {by_k[768]:.1f} dB)"
        assert by_k[4] < by_k[768] - 10, f"{bg}: 4 components should lose detail"

"""Is a small object's shape in the latent, or lost by the decoder? (MODEL_CARD.md, "Where shape is lost")

    python scripts/latent_shape_probe.py [--vae A.safetensors --vae B.safetensors] [--images 1200]

Renders single-frame scenes of one small still object (the four shapes in turn, random colour, black or gray),
encodes them, and trains a probe on the 3x3 latent cells around the object (16 x 9 numbers) for its shape:
a logistic regression and a one-hidden-layer MLP, scored on the last quarter of the images, which they never saw.
The same held-out images are decoded by each VAE and read by the evaluation's analyzer. A probe far above the
decoded frames means the encoder kept the shape and the decoder loses it: a better decoder (decoder-only
training) can win it back without touching the latent space. Hand-written here; sklearn does the fitting.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from cinegen.data.clips import video_to_tensor
from cinegen.data.world import COLOURS, ObjectSpec, SceneSpec, render_scene
from cinegen.eval.analyzer import COLOUR_NAMES, colour_labels, shape_of, track_colour
from cinegen.pipeline import WEIGHTS_DIR
from cinegen.training.train_vae import load_vae

SHAPES = ("ball", "box", "triangle", "ring")


def scenes(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        colour = str(rng.choice(list(COLOURS)))
        scene = SceneSpec((ObjectSpec(colour, SHAPES[i % 4], "small", "stays still"),), str(rng.choice(["black", "gray"])))
        yield scene, render_scene(scene, 64, 64, 1, 8.0, seed=i).video, COLOUR_NAMES.index(colour)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", action="append", default=[], help="VAE files sharing one encoder (default: shipped)")
    ap.add_argument("--images", type=int, default=1200)
    args = ap.parse_args()
    vaes = [load_vae(p) for p in (args.vae or [WEIGHTS_DIR / "vae.safetensors"])]
    split = args.images * 3 // 4
    feats, labels, latents, colours = [], [], [], []
    for scene, video, k in scenes(args.images):
        cx, cy = track_colour(colour_labels(video), k).xy[0]
        z = vaes[0].encode(video_to_tensor(video)[None])[0, :, 0]            # (C, h, w): one latent frame
        zp = F.pad(z, (1, 1, 1, 1))                                          # (C, h+2, w+2): 3x3 around any cell
        gy, gx = int(cy * z.shape[1]), int(cx * z.shape[2])
        feats.append(zp[:, gy:gy + 3, gx:gx + 3].flatten().numpy())          # (C*9,)
        labels.append(scene.objects[0].shape)
        latents.append(z)
        colours.append(k)
    x, y = np.array(feats), np.array(labels)
    for probe in (LogisticRegression(max_iter=2000), MLPClassifier((256,), max_iter=500, random_state=0)):
        probe.fit(x[:split], y[:split])
        print(f"{type(probe).__name__:>20} on the latent: {np.mean(probe.predict(x[split:]) == y[split:]):.3f}")
    for path, vae in zip(args.vae or ["shipped"], vaes):
        ok = []
        for z, k, shape in zip(latents[split:], colours[split:], labels[split:]):
            frame = vae.decode(z[None, :, None])[0].clamp(-1, 1)            # (3, 1, H, W)
            frame = ((frame.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8)   # (1, H, W, 3)
            ok.append(shape_of(track_colour(colour_labels(frame), k)) == shape)
        print(f"analyzer on frames decoded by {path}: {np.mean(ok):.3f}")
    print(f"({args.images - split} held-out images of small still objects, four shapes in turn: chance 0.25)")


if __name__ == "__main__":
    main()

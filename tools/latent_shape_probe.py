"""Is a small object's shape in the latent, or lost by the decoder? (MODEL_CARD.md, "Where shape is lost")

    python tools/latent_shape_probe.py [--vae A.safetensors --vae B.safetensors] [--images 1200] [--generated 160]

Renders single-frame scenes of one small still object (the four shapes in turn, random colour, black or gray),
encodes them, and trains a probe on the 3x3 latent cells around the object (16 x 9 numbers) for its shape:
a logistic regression and a one-hidden-layer MLP, scored on the last quarter of the images, which they never saw.
The same held-out images are decoded by each VAE and read by the evaluation's analyzer. A probe far above the
decoded frames means the encoder kept the shape and the decoder loses it: a better decoder (decoder-only
training) can win it back without touching the latent space.

--generated N: the shipped model (or --model DIR's DiTs) generates N clips of "a small <colour> <shape> stays still on a black
background" (native 2 s, 64x64, seed i), and the same MLP probe reads the first latent frame where the object
is drawn: does the DiT's latent carry the shape the way the encoder's does? Hand-written here; sklearn fits.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from cinegen.eval.analyzer import COLOUR_NAMES, colour_labels, shape_of, track_colour
from cinegen.io.video import tensor_to_video, video_to_tensor
from cinegen.models.loading import load_vae
from cinegen.pipeline import WEIGHTS_DIR
from cinegen.toyworld.world import COLOURS, SHAPES, ObjectSpec, SceneSpec, render_scene


def patch_around(z: torch.Tensor, cx: float, cy: float) -> np.ndarray:
    """(C*9,) the 3x3 latent cells around the normalised point (cx, cy) of one latent frame z (C, h, w)."""
    zp = F.pad(z, (1, 1, 1, 1))                                              # (C, h+2, w+2): 3x3 around any cell
    gy, gx = int(cy * z.shape[1]), int(cx * z.shape[2])
    return zp[:, gy:gy + 3, gx:gx + 3].flatten().numpy()


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
    ap.add_argument("--generated", type=int, default=0, help="also probe this many of the shipped model's latents")
    ap.add_argument("--model", default=None, help="model folder whose DiTs generate for --generated (default: shipped)")
    args = ap.parse_args()
    vaes = [load_vae(p) for p in (args.vae or [WEIGHTS_DIR / "vae.safetensors"])]
    split = args.images * 3 // 4
    feats, labels, latents, colours = [], [], [], []
    for scene, video, k in scenes(args.images):
        cx, cy = track_colour(colour_labels(video), k).xy[0]
        z = vaes[0].encode(video_to_tensor(video)[None])[0, :, 0]            # (C, h, w): one latent frame
        feats.append(patch_around(z, cx, cy))
        labels.append(scene.objects[0].shape)
        latents.append(z)
        colours.append(k)
    x, y = np.array(feats), np.array(labels)
    for probe in (LogisticRegression(max_iter=2000), MLPClassifier((256,), max_iter=500, random_state=0)):
        probe.fit(x[:split], y[:split])
        print(f"{type(probe).__name__:>20} on the latent: {np.mean(probe.predict(x[split:]) == y[split:]):.3f}")
    if args.generated:
        probe_generated(probe, args.generated, vaes, args.vae or ["shipped"], args.model)
    for path, vae in zip(args.vae or ["shipped"], vaes):
        ok = []
        for z, k, shape in zip(latents[split:], colours[split:], labels[split:]):
            frame = tensor_to_video(vae.decode(z[None, :, None])[0])        # (1, H, W, 3) uint8
            ok.append(shape_of(track_colour(colour_labels(frame), k)) == shape)
        print(f"analyzer on frames decoded by {path}: {np.mean(ok):.3f}")
    print(f"({args.images - split} held-out images of small still objects, four shapes in turn: chance 0.25)")


def probe_generated(probe, n: int, vaes: list, names: list, model: str | None = None) -> None:
    """The fitted probe on a model's (default: the shipped one's) own latents, beside the analyzer on the frames
    each VAE decodes them to (the probe reads where the first VAE drew the object)."""
    from cinegen.config import SampleConfig
    from cinegen.pipeline import TextToVideo
    pipe = TextToVideo.from_pretrained(model)
    read, drawn = [], {name: [] for name in names}
    for i, (scene, _, k) in enumerate(scenes(n, seed=1)):
        obj = scene.objects[0]
        prompt = f"a small {obj.colour} {obj.shape} stays still on a black background"
        z = pipe.generate(prompt, SampleConfig(seed=i), return_latents=True)[0, :, 0].cpu()   # (C, h, w)
        for j, (name, vae) in enumerate(zip(names, vaes)):
            with torch.no_grad():
                frame = tensor_to_video(vae.decode(z[None, :, None])[0])    # (1, H, W, 3) uint8
            track = track_colour(colour_labels(frame), k)
            drawn[name].append(bool(track.present[0]) and shape_of(track) == obj.shape)
            if j == 0 and track.present[0]:
                read.append(probe.predict(patch_around(z, *track.xy[0])[None])[0] == obj.shape)
    print(f"{model or 'shipped'} model, {n} prompts; object found in {len(read)} frames of the first VAE: the probe reads the "
          f"prompted shape from its latent there in {np.mean(read):.3f}")
    for name in names:
        print(f"  frames decoded by {name}: the prompted shape drawn (object found and right) in {np.mean(drawn[name]):.3f} "
              "of all prompts")


if __name__ == "__main__":
    main()

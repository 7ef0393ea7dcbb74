"""Autoencoders side by side on the evaluation's own world clips (issue 35): for each VAE file, the round trip
(encode, decode) of every text-to-video case of the hard set (eval/hard.py: does it still pass every check of its
section?) and of the easy set's real clips (eval/run.py's prompts: PSNR and the analyzer's all-pass), all on the
same clips, each file paired with the first.

    python tools/decoder_compare.py src/cinegen/weights/vae.safetensors runs/x/vae.safetensors \\
        --seeds 0 1 --limit 2 --easy 48 --out decoder_compare.json

The hard cases are those `cinegen eval --set hard --limit L --seed S` draws (the same redraws of cases the world
fails), so the "autoencoder all pass" column of that command is the first file's count here.

--generate also scores the model's own renders, decoded by each file: the easy set's prompts and the hard set's
one-window text cases (2 s: multi, collide, 128x128, 64x96, photo camera), each sampled once by the shipped DiTs
with the prompt, size and seed `cinegen eval` gives it (the decoder does not take part in sampling there, so every
file decodes the same latents: a paired comparison). The latents are cached in --latents, clip by clip, so a run
stopped early resumes. Longer clips and the modes re-encode decoded frames: `cinegen eval --set hard` measures those.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen import defaults
from cinegen.config import SampleConfig
from cinegen.eval import hard
from cinegen.eval.analyzer import analyze
from cinegen.eval.run import heldout_scenes, seen_scenes
from cinegen.io.files import atomic_write
from cinegen.models.loading import load_vae
from cinegen.pipeline import TextToVideo
from cinegen.toyworld.world import ObjectSpec, SceneSpec, canonical_caption, render_scene


def clip_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 videos."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


class CaseCache:
    """The hard set's drawn cases by (seed, limit, sections), kept in a JSON file: drawing them scores the world's
    render of every candidate, which on a busy 2-core CPU takes longer than the round trips themselves."""

    def __init__(self, path: Path | None):
        self.path = path
        self.cases = json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def get(self, pipe, cfg: SampleConfig, holdout, seed: int, limit: int, sections) -> list[hard.HardCase]:
        key = f"{seed}/{limit}/{'+'.join(sections)}"
        if key not in self.cases:
            cases, _ = hard.hard_cases(limit, holdout, seed, sections, feasible=hard.world_passes(pipe, cfg))
            self.cases[key] = [dataclasses.asdict(c) for c in cases]
            if self.path is not None:
                text = json.dumps(self.cases)
                atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        return [_case(d) for d in self.cases[key]]


def _case(d: dict) -> hard.HardCase:
    scene = dict(d["scene"])
    scene["objects"] = tuple(ObjectSpec(**o) for o in scene["objects"])
    return hard.HardCase(**{**d, "scene": SceneSpec(**scene)})


def hard_clips(pipe, cfg: SampleConfig, holdout, seeds, limit: int,
               cases_cache: CaseCache) -> list[tuple[hard.HardCase, np.ndarray]]:
    """(case, world clip) for every text-to-video case of the hard set at each seed."""
    out = []
    for seed in seeds:
        for case in cases_cache.get(pipe, cfg, holdout, seed, limit, tuple(hard.TEXT_SECTIONS)):
            c = SampleConfig(width=case.width, height=case.height, seconds=case.seconds, fps=cfg.fps)
            out.append((case, hard._render(case, pipe.num_frames(c), c.fps)))
    return out


def easy_clips(pipe, cfg: SampleConfig, holdout, seeds, n: int) -> list[tuple[str, object, np.ndarray]]:
    """(split, scene, real clip) of the easy set's prompts at each seed, rendered as `cinegen eval` renders them."""
    out = []
    for seed in seeds:
        for split, scenes in (("seen", seen_scenes(n, holdout, seed)), ("heldout", heldout_scenes(n, holdout, seed))):
            for i, scene in enumerate(scenes):
                out.append((split, scene, render_scene(scene, cfg.width, cfg.height, pipe.num_frames(cfg), cfg.fps,
                                                       seed=i).video))
    return out


class LatentCache:
    """Generated latents by key, written to `path` after each new one (atomic), read back on a rerun."""

    def __init__(self, path: Path, frozen: bool = False):
        from safetensors.torch import load_file
        self.path, self.frozen = path, frozen
        self.latents = load_file(str(path)) if path.is_file() else {}

    def get(self, key: str, make):
        """The latents of `key`, made (and cached) if missing; None when missing from a frozen cache."""
        if self.frozen and key not in self.latents:
            return None
        if key not in self.latents:
            from safetensors.torch import save_file
            self.latents[key] = make().cpu().contiguous()
            atomic_write(self.path, lambda tmp: save_file(self.latents, tmp))
        return self.latents[key]


def generated(pipe, cfg: SampleConfig, holdout, seeds, limit: int, n_easy: int, cache: LatentCache,
              cases_cache: CaseCache, sets=("hard", "easy")) -> list[dict]:
    """The renders `cinegen eval --seed S` makes, as latents: {set, split, section, scene, case, latents}. Easy
    prompts use noise seed S + their index in the split; hard cases S + their index among all the set's cases."""
    out = []
    for seed in seeds:
        easy = (("seen", seen_scenes(n_easy, holdout, seed)), ("heldout", heldout_scenes(n_easy, holdout, seed)))
        for split, scenes in easy if "easy" in sets else ():
            for i, scene in enumerate(scenes):
                c = replace(cfg, seed=seed + i)                # `cinegen eval --seed S`: noise seed S + i
                z = cache.get(f"easy/{seed}/{split}/{i}",
                              lambda: pipe.generate(canonical_caption(scene), c, return_latents=True))
                if z is not None:
                    out.append({"set": "easy", "split": split, "section": "easy", "scene": scene, "latents": z})
        # the text sections come first in hard.SECTIONS, so their cases and indices are the whole set's
        cases = cases_cache.get(pipe, cfg, holdout, seed, limit, tuple(hard.TEXT_SECTIONS)) if "hard" in sets else []
        for i, case in enumerate(cases):
            if case.section not in hard.TEXT_SECTIONS or case.seconds > defaults.WINDOW_SECONDS:
                continue
            c = replace(cfg, width=case.width, height=case.height, seconds=case.seconds, seed=seed + i)
            z = cache.get(f"hard/{seed}/{limit}/{i}", lambda: pipe.generate(case.prompt, c, return_latents=True))
            if z is not None:
                out.append({"set": "hard", "split": case.split, "section": case.section, "scene": case.scene,
                            "case": case, "latents": z})
    return out


def score_generated(pipe, vae_path: Path, renders: list[dict]) -> list[dict]:
    """Each render decoded by one file and scored as `cinegen eval` scores it: all-pass and failed checks."""
    p = copy.copy(pipe)
    p.vae = load_vae(vae_path, pipe.device)
    rows = []
    for r in renders:
        video = p.decode_latents(r["latents"].to(pipe.device))
        if r["set"] == "easy":
            checks = analyze(video, r["scene"]).checks
        else:
            case = r["case"]
            c = SampleConfig(width=case.width, height=case.height, seconds=case.seconds)
            real = hard._render(case, pipe.num_frames(c), c.fps)
            checks = hard.score_text(video, real, case.scene).checks
        rows.append({"set": r["set"], "section": r["section"], "split": r["split"],
                     "prompt": canonical_caption(r["scene"]), "pass": all(checks.values()),
                     "failed": [k for k, v in checks.items() if not v]})
    return rows


def score(pipe, vae_path: Path, hard_set, easy_set) -> dict:
    """One file's round trips of both sets: per clip, whether it passes every check, and its PSNR."""
    p = copy.copy(pipe)
    p.vae = load_vae(vae_path, pipe.device)
    hard_rows = []
    for case, real in hard_set:
        rt = p.roundtrip(real)
        checks = hard.score_text(rt, real, case.scene).checks
        hard_rows.append({"section": case.section, "split": case.split, "prompt": case.prompt,
                          "pass": all(checks.values()), "failed": [k for k, v in checks.items() if not v],
                          "psnr": clip_psnr(rt, real)})
    easy_rows = []
    for split, scene, real in easy_set:
        rt = p.roundtrip(real)
        easy_rows.append({"split": split, "pass": all(analyze(rt, scene).checks.values()), "psnr": clip_psnr(rt, real)})
    return {"vae": str(vae_path), "hard": hard_rows, "easy": easy_rows}


def paired(a: list[float], b: list[float]) -> str:
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean():+.2f} (SE {se:.2f})"


def table(results: list[dict]) -> str:
    """Plain-text summary: hard round trips passing every check per section and split, easy PSNR and all-pass."""
    first = results[0]
    lines = []
    sections = list(dict.fromkeys(r["section"] for r in first["hard"]))
    for res in results:
        lines.append(f"== {res['vae']}")
        for section in [*sections, "all"]:
            cells = []
            for split in ("seen", "heldout"):
                rows = [r for r in res["hard"] if (section == "all" or r["section"] == section) and r["split"] == split]
                cells.append(f"{split} {sum(r['pass'] for r in rows)}/{len(rows)}")
            rows = [r for r in res["hard"] if section == "all" or r["section"] == section]
            lines.append(f"  hard {section:13s} {'  '.join(cells)}  psnr {np.mean([r['psnr'] for r in rows]):.2f}")
        for split in ("seen", "heldout"):
            rows = [r for r in res["easy"] if r["split"] == split]
            lines.append(f"  easy {split:13s} all pass {sum(r['pass'] for r in rows)}/{len(rows)}  "
                         f"psnr {np.mean([r['psnr'] for r in rows]):.2f}")
        for kind in ("easy", "hard"):
            for split in ("seen", "heldout"):
                rows = [r for r in res.get("generated", []) if r["set"] == kind and r["split"] == split]
                if rows:
                    lines.append(f"  generated {kind} {split:8s} all pass {sum(r['pass'] for r in rows)}/{len(rows)}")
        if res is not first:
            hp = [r["pass"] for r in res["hard"]]
            fp = [r["pass"] for r in first["hard"]]
            gained = sum(b and not a for a, b in zip(fp, hp))
            lost = sum(a and not b for a, b in zip(fp, hp))
            g, fg = [r["pass"] for r in res.get("generated", [])], [r["pass"] for r in first.get("generated", [])]
            if g:
                lines.append(f"  generated vs first: gained {sum(b and not a for a, b in zip(fg, g))}, lost "
                             f"{sum(a and not b for a, b in zip(fg, g))} of {len(g)}")
            lines.append(f"  vs first: hard cases gained {gained}, lost {lost}; hard psnr "
                         f"{paired([r['psnr'] for r in first['hard']], [r['psnr'] for r in res['hard']])} dB; easy psnr "
                         f"{paired([r['psnr'] for r in first['easy']], [r['psnr'] for r in res['easy']])} dB")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vaes", nargs="+", type=Path, help="VAE files; the first is the reference (the shipped one)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="hard- and easy-set seeds")
    ap.add_argument("--limit", type=int, default=2, help="hard set: cases per section and split (its --limit)")
    ap.add_argument("--easy", type=int, default=48, help="easy set: prompts per split and seed")
    ap.add_argument("--out", type=Path, default=Path("decoder_compare.json"))
    ap.add_argument("--generate", action="store_true", help="also decode the model's own renders (see above)")
    ap.add_argument("--gen-easy", type=int, default=24, help="--generate: easy prompts per split and seed")
    ap.add_argument("--latents", type=Path, default=Path("decoder_compare_latents.safetensors"),
                    help="--generate: the cache of generated latents")
    ap.add_argument("--cases", type=Path, default=None, help="a JSON cache of the drawn hard cases")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="an earlier report of the same settings: files scored there are not scored again")
    ap.add_argument("--only-generate", action="store_true", help="fill the latent cache and stop (no VAE scored)")
    ap.add_argument("--cached-only", action="store_true",
                    help="--generate: score only the renders already in --latents (a generation stopped early)")
    ap.add_argument("--gen-sets", nargs="+", choices=("hard", "easy"), default=["hard", "easy"],
                    help="--generate: which sets' renders")
    args = ap.parse_args(argv)
    for path in args.vaes:
        if not path.is_file():
            raise SystemExit(f"VAE file not found: {path}")
    pipe = TextToVideo.from_pretrained(None, device="cpu")
    holdout = tuple(pipe.dit.extra.get("holdout", ()))
    cfg = SampleConfig()
    cases = CaseCache(args.cases)
    renders = generated(pipe, cfg, holdout, args.seeds, args.limit, args.gen_easy, LatentCache(args.latents, args.cached_only),
                        cases, args.gen_sets) \
        if args.generate or args.only_generate else []
    if args.only_generate:
        print(f"{len(renders)} renders in {args.latents}")
        return
    hard_set = hard_clips(pipe, cfg, holdout, args.seeds, args.limit, cases)
    easy_set = easy_clips(pipe, cfg, holdout, args.seeds, args.easy)
    earlier = {}
    if args.reuse is not None:
        old = json.loads(args.reuse.read_text())
        if (old["seeds"], old["limit"], old["easy"]) != (args.seeds, args.limit, args.easy):
            raise SystemExit(f"{args.reuse} was made with other --seeds, --limit or --easy")
        earlier = {r["vae"]: r for r in old["results"]}
    results = [dict(earlier[str(path)]) if str(path) in earlier else score(pipe, path, hard_set, easy_set)
               for path in args.vaes]
    for res, path in zip(results, args.vaes):
        res["generated"] = score_generated(pipe, path, renders)
    text = table(results)
    print(text)
    report = json.dumps({"seeds": args.seeds, "limit": args.limit, "easy": args.easy, "results": results,
                         "table": text}, indent=1)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(report))


if __name__ == "__main__":
    main()

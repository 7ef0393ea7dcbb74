"""`cinegen eval`: generate from canonical prompts, score with the analyzer, split seen vs held-out combinations.

Seen prompts are drawn like training scenes (minus the holdout); held-out prompts are built to match a holdout
phrase, filling its unnamed attributes at random. Real toy-world renders of the same prompts are scored too,
as the analyzer's own ceiling, and (given the model's autoencoder) so are their round trips through it: the
ceiling the diffusion model can reach, since everything it makes is decoded by that autoencoder.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen.config import SampleConfig
from cinegen.eval.analyzer import (
    ANALYZER_BEFORE_VERSIONS,
    ANALYZER_VERSION,
    COLOUR_NAMES,
    analyze,
    colour_labels,
    displacement,
    track_colour,
)
from cinegen.io.files import atomic_write
from cinegen.runtime import report
from cinegen.toyworld.world import (
    COLOURS,
    MOTIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    SceneSpec,
    canonical_caption,
    matches_holdout,
    random_scene,
    render_scene,
)

EVAL_BACKGROUNDS = ("black", "gray", "sky")     # photos are scored in training data, not here: see MODEL_CARD.md


def seen_scenes(n: int, holdout: tuple[str, ...], seed: int = 0) -> list[SceneSpec]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s = random_scene(rng, holdout, max_objects=1, p_collide=0, p_occluder=0)
        if s.background in EVAL_BACKGROUNDS:
            out.append(s)
    return out


def heldout_scenes(n: int, holdout: tuple[str, ...], seed: int = 0) -> list[SceneSpec]:
    """Scenes whose single object matches a holdout phrase, cycling through the phrases."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(n if holdout else 0):
        words = set(holdout[i % len(holdout)].split())
        out.append(SceneSpec((object_with(words, rng),), str(rng.choice(EVAL_BACKGROUNDS))))
    return out


def object_with(words: set[str], rng) -> ObjectSpec:
    """A random object whose attributes include every holdout word (the other attributes drawn at random)."""
    def pick(options):
        named = [o for o in options if set(o.split()) <= words]
        return str(named[0] if named else rng.choice(list(options)))
    shape = pick(SHAPES)
    motions = [m for m in MOTIONS if not (m == "spins" and shape in ("ball", "ring"))]   # discs do not visibly spin
    obj = ObjectSpec(pick(COLOURS), shape, pick(SIZES), pick(motions))
    if not matches_holdout(obj, (" ".join(sorted(words)),)):
        raise ValueError(f"no object matches holdout words {sorted(words)}")
    return obj


def summarise(reports: list) -> dict:
    by_attr = defaultdict(list)
    for r in reports:
        for k, v in r.checks.items():
            by_attr[k.split(".")[-1]].append(bool(v))
    return {"clips": len(reports), "adherence": float(np.mean([r.score for r in reports])) if reports else None,
            "all_pass": float(np.mean([all(r.checks.values()) for r in reports])) if reports else None,
            "by_attribute": {k: float(np.mean(v)) for k, v in sorted(by_attr.items())},
            "flicker": float(np.mean([r.flicker for r in reports])) if reports else None}


def evaluate(generate_fn, holdout: tuple[str, ...], cfg: SampleConfig, n_seen: int = 24, n_heldout: int = 16,
             seed: int = 0, progress=None, roundtrip_fn=None) -> dict:
    """generate_fn(prompt, cfg) -> (T, H, W, 3) uint8. Returns the report dict (also real-clip ceilings).
    progress: the one progress callback (runtime.report), after each clip, with its score.

    roundtrip_fn(video) -> video: the model's autoencoder (encode then decode); its round trips of the real
    clips are scored as "autoencoder" per split.
    """
    splits = {"seen": seen_scenes(n_seen, holdout, seed), "heldout": heldout_scenes(n_heldout, holdout, seed)}
    total, done = sum(len(s) for s in splits.values()), 0
    result: dict = {"analyzer": ANALYZER_VERSION, "sample_config": cfg.__dict__, "holdout": list(holdout), "splits": {}}
    for name, scenes in splits.items():
        gen_reports, real_reports, rt_reports, rows = [], [], [], []
        for i, scene in enumerate(scenes):
            prompt = canonical_caption(scene)
            video = generate_fn(prompt, replace(cfg, seed=cfg.seed + i))
            real = render_scene(scene, cfg.width, cfg.height, video.shape[0], cfg.fps, seed=i).video
            gen_reports.append(analyze(video, scene))
            real_reports.append(analyze(real, scene))
            if roundtrip_fn is not None:
                rt_reports.append(analyze(roundtrip_fn(real), scene))
            rows.append({"prompt": prompt, "score": gen_reports[-1].score,
                         "checks": {k: bool(v) for k, v in gen_reports[-1].checks.items()}})
            done += 1
            report(progress, name, done, total, score=gen_reports[-1].score)
        result["splits"][name] = {"generated": summarise(gen_reports), "real": summarise(real_reports), "clips": rows,
                                  "motion_by_kind": motion_by_kind(scenes, gen_reports)}
        if roundtrip_fn is not None:
            result["splits"][name]["autoencoder"] = summarise(rt_reports)
    return result


def motion_by_kind(scenes: list[SceneSpec], reports: list) -> dict:
    """Share of objects whose motion check passed, per prompted motion ("moves left": 0.4, ...): which motions fail."""
    passed = defaultdict(list)
    for scene, scored in zip(scenes, reports):
        for i, obj in enumerate(scene.objects):
            passed[obj.motion].append(bool(scored.checks[f"obj{i}.motion"]))
    return {m: {"n": len(v), "passed": float(np.mean(v))} for m, v in sorted(passed.items())}


def direction_pairs(generate_fn, holdout: tuple[str, ...], cfg: SampleConfig, n: int = 8, seed: int = 0) -> dict:
    """Same seed, opposite direction words: does the word or the noise choose where an object goes?

    For n objects, "moves left" and "moves right" are generated with one seed each pair. Returns the share of pairs
    whose horizontal displacements follow both words (left < 0 < right) and the share where both go the same way
    (the noise decided), plus the displacements in frame widths.
    """
    rng = np.random.default_rng(seed + 2)
    rows = []
    while len(rows) < n:
        colour, shape, size = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), str(rng.choice(SIZES))
        objs = [ObjectSpec(colour, shape, size, m) for m in ("moves left", "moves right")]
        if any(matches_holdout(o, holdout) for o in objs):
            continue
        dx = [_horizontal_shift(generate_fn(canonical_caption(SceneSpec((o,), "black")),
                                            replace(cfg, seed=cfg.seed + len(rows))), colour) for o in objs]
        rows.append({"object": f"{size} {colour} {shape}", "dx_left": dx[0], "dx_right": dx[1]})
    both = [r for r in rows if r["dx_left"] is not None and r["dx_right"] is not None]
    return {"pairs": n, "follow_words": sum(r["dx_left"] < 0 < r["dx_right"] for r in both) / n,
            "same_direction": sum(np.sign(r["dx_left"]) == np.sign(r["dx_right"]) for r in both) / n, "rows": rows}


def _horizontal_shift(video: np.ndarray, colour: str) -> float | None:
    """x displacement (frame widths) of the colour's largest blob, first to last frame it is seen; None if unseen."""
    shift = displacement(track_colour(colour_labels(video), COLOUR_NAMES.index(colour)))
    return None if shift is None else round(float(shift[0]), 4)


def noise_baseline(cfg: SampleConfig, frames: int, holdout: tuple[str, ...], n: int = 8, seed: int = 0) -> float:
    """Analyzer score of uniform noise videos (`frames` long) against seen prompts: the floor (should be ~0)."""
    rng = np.random.default_rng(seed)
    scores = [analyze(rng.integers(0, 256, (frames, cfg.height, cfg.width, 3), dtype=np.uint8), s).score
              for s in seen_scenes(n, holdout, seed)]
    return float(np.mean(scores))


def paired_difference(before: dict, after: dict) -> dict:
    """Per split: mean clip-score change from `before` to `after` (two eval reports of the same prompts and seeds)
    with its standard error, and per attribute the pass rates before and after. Pairing removes the prompt-to-
    prompt spread, so changes far smaller than either report's own noise show up."""
    return pooled_difference([(before, after)])


def pooled_difference(pairs: list[tuple[dict, dict]]) -> dict:
    """paired_difference over several (before, after) report pairs at once (e.g. two models on `--seed 0` and on
    `--seed 1`): the clip differences of every pair are pooled, so the standard error is that of all clips. Per
    attribute: pass rates before and after, and the paired change of each clip's pass rate with its standard error
    (over the clips that check that attribute)."""
    versions = {r.get("analyzer", ANALYZER_BEFORE_VERSIONS) for pair in pairs for r in pair}
    if len(versions) > 1:
        raise ValueError(f"the reports were scored by different analyzer versions ({', '.join(sorted(versions))}): "
                         "re-run the older ones with this cinegen")
    out = {}
    for split in dict.fromkeys(s for before, _ in pairs for s in before["splits"]):
        ca, cb = [], []
        for before, after in pairs:
            a = before["splits"].get(split, {}).get("clips", [])
            b = after["splits"].get(split, {}).get("clips", [])
            if [c["prompt"] for c in a] != [c["prompt"] for c in b]:
                raise ValueError(f"the reports hold different {split} prompts (other --n-seen/--n-heldout/--seed?)")
            ca, cb = ca + a, cb + b
        if len(ca) < 2:
            continue
        d = np.array([y["score"] - x["score"] for x, y in zip(ca, cb)])
        attrs = sorted({k.split(".")[-1] for c in ca for k in c["checks"]})
        out[split] = {"clips": len(d), "before": float(np.mean([c["score"] for c in ca])),
                      "after": float(np.mean([c["score"] for c in cb])), "change": float(d.mean()),
                      "stderr": _stderr(d),
                      "by_attribute": {k: (_pass_rate(ca, k), _pass_rate(cb, k)) for k in attrs},
                      "attribute_change": {k: _attribute_change(ca, cb, k) for k in attrs}}
    return out


def _stderr(d: np.ndarray) -> float:
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def _attribute_change(ca: list[dict], cb: list[dict], attr: str) -> tuple[float, float]:
    """(mean change, standard error) of the clip-level pass rate of `attr`, over the clips that check it."""
    checks = [(x, y) for x, y in zip(ca, cb) if all(any(k.split(".")[-1] == attr for k in c["checks"]) for c in (x, y))]
    d = np.array([_pass_rate([y], attr) - _pass_rate([x], attr) for x, y in checks])
    return float(d.mean()), _stderr(d)


def _pass_rate(clips: list[dict], attr: str) -> float:
    return float(np.mean([v for c in clips for k, v in c["checks"].items() if k.split(".")[-1] == attr]))


def write_report(result: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))

"""The hard evaluation set (issue 35; `cinegen eval --set hard`): what the easy set (eval/run.py: one object,
64x64, 2 s, plain backgrounds) leaves out, each as its own section, split into seen and held-out prompts.

    multi         two or three objects: each one's colour, shape, motion, and its identity (one blob, no jumps)
    collide       two objects that meet and bounce apart ("they collide"): each keeps its side and shape
    128x128       one object at twice the trained size; 64x96 a portrait frame (the model trained 64x64, 96x64)
    4 s, 8 s      one object over long clips (windowed generation): the motion's extent against the world's own
    photo camera  one object over a photo while the camera pans or zooms
    extend        the first half of a world clip extended by 1 s: position and velocity continuous at the seam
    extend backward  the second half extended backwards: the new frames move as the prompt says, into the seam
    loop          a world clip looped: the wrap changes like an ordinary frame step, the bridge keeps the object
    connect       two world clips of one prompt connected: no jump at either end, the object kept between

Every clip is scored beside the world's own render of the same prompt (for loops, the world clip played forwards
then backwards, a true loop; connect has no world reference), and, given the model's autoencoder, the world's
clips of the text-to-video sections through it: the ceiling of what the model can pass. A case whose world render fails its own checks
(an 8 s "moves right" leaves the frame; a 3-object scene where two overlap) is drawn again: the set asks only
what the world can show, and the report counts the redraws per section. Reported per section and split: the share
of clips that pass every check (`all_pass`), the mean check score, and the pass rate of each kind of check.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from cinegen import defaults, modes
from cinegen.config import SampleConfig
from cinegen.eval.analyzer import (
    JUMP_MARGIN,
    SEAM_POSITION,
    ClipReport,
    analyze,
    collide_ok,
    identity_ok,
    loop_seam_ok,
    magnitude_ok,
    seam_checks,
    tracks_of,
)
from cinegen.eval.run import EVAL_BACKGROUNDS, object_with
from cinegen.runtime import report
from cinegen.toyworld.world import CAMERAS, PHOTOS, SceneSpec, canonical_caption, matches_holdout, random_scene, render_scene

# section -> (width, height, seconds) of a text-to-video case; the others are the easy set's (the defaults)
BASE = (defaults.WIDTH, defaults.HEIGHT, defaults.SECONDS)
TEXT_SECTIONS = {"multi": BASE, "collide": BASE, "128x128": (128, 128, defaults.SECONDS),
                 "64x96": (64, 96, defaults.SECONDS), "4 s": (*BASE[:2], 4.0), "8 s": (*BASE[:2], 8.0),
                 "photo camera": BASE}
MODE_SECTIONS = ("extend", "extend backward", "loop", "connect")
SECTIONS = (*TEXT_SECTIONS, *MODE_SECTIONS)
MODE_SECONDS = 1.0            # what extend, loop and connect add
MAX_REDRAWS = 50              # per case: a section whose world cannot show its cases is a bug, not a long loop


@dataclass(frozen=True)
class HardCase:
    section: str
    split: str                # "seen" | "heldout"
    scene: SceneSpec
    width: int = defaults.WIDTH
    height: int = defaults.HEIGHT
    seconds: float = defaults.SECONDS
    render_seed: int = 0      # the world's render of the prompt (object placement)

    @property
    def prompt(self) -> str:
        return canonical_caption(self.scene)


# --- Drawing the cases ---

def _plain(rng, holdout, n_objects: int = 1, collide: bool = False) -> SceneSpec:
    """A scene of `n_objects` objects on a plain background, none held out."""
    while True:
        s = random_scene(rng, holdout, max_objects=max(n_objects, 2 if collide else 1), p_collide=float(collide),
                         p_occluder=0)
        if len(s.objects) == n_objects and s.background in EVAL_BACKGROUNDS:
            return s


def _held_out(scene: SceneSpec, phrase: str, rng, slot: int = 0) -> SceneSpec | None:
    """The scene with object `slot` replaced by one matching the holdout phrase (its motion kept in a collision,
    its colour unlike the others'); None when no such object exists."""
    obj = object_with(set(phrase.split()), rng)
    if scene.collide:
        obj = replace(obj, motion=scene.objects[slot].motion)
    if not matches_holdout(obj, (phrase,)) or obj.colour in {o.colour for o in scene.objects}:
        return None
    return replace(scene, objects=tuple(obj if i == slot else o for i, o in enumerate(scene.objects)))


def draw_scene(section: str, split: str, i: int, rng, holdout: tuple[str, ...]) -> SceneSpec:
    """Case i of a section: seen scenes hold no held-out combination; held-out ones hold one, the phrases taken in
    turn (skipping those a section cannot hold: a collision's objects only move left or right)."""
    n_objects = 2 + i % 2 if section == "multi" else 2 if section == "collide" else 1
    for _ in range(MAX_REDRAWS):
        scene = _plain(rng, holdout, n_objects, collide=section == "collide")
        if section == "photo camera":
            scene = replace(scene, background="photo", camera=CAMERAS[1 + i % (len(CAMERAS) - 1)],
                            photo=str(rng.choice(PHOTOS)))
        if split == "seen":
            return scene
        for j in range(len(holdout) * n_objects):
            held = _held_out(scene, holdout[(i + j // n_objects) % len(holdout)], rng, slot=(i + j) % n_objects)
            if held is not None:
                return held
    raise ValueError(f"no {section} scene can hold any holdout phrase of {holdout}")


def hard_cases(limit: int, holdout: tuple[str, ...], seed: int = 0, sections=SECTIONS,
               feasible=None) -> tuple[list[HardCase], dict[str, int]]:
    """`limit` cases per section and split, and the redraws per section. feasible(case) -> bool: keep only cases
    it accepts (the world's own render passing its checks), drawing again otherwise."""
    cases, redraws = [], defaultdict(int)
    for s_i, section in enumerate(sections):
        w, h, seconds = TEXT_SECTIONS.get(section, BASE)
        for split in ("seen", "heldout") if holdout else ("seen",):
            rng = np.random.default_rng([seed, s_i, split == "heldout"])
            for i in range(limit):
                for _ in range(MAX_REDRAWS):
                    case = HardCase(section, split, draw_scene(section, split, i, rng, holdout), w, h, seconds,
                                    render_seed=int(rng.integers(2**31)))
                    if feasible is None or feasible(case):
                        break
                    redraws[section] += 1
                else:
                    raise ValueError(f"the world fails its own {section} checks {MAX_REDRAWS} times in a row")
                cases.append(case)
    return cases, dict(redraws)


# --- Scoring: each section's checks of an output, given the world's reference ---

def score_text(video: np.ndarray, real: np.ndarray, scene: SceneSpec) -> ClipReport:
    """The easy set's checks (analyze) plus, per object, identity and the motion's extent against the world's;
    a collision is checked as one ("relation"), since each object turns back and its net motion is not its word."""
    scored = analyze(video, scene)
    gen, ref = tracks_of(video, scene), tracks_of(real, scene)
    for i, obj in enumerate(scene.objects):
        scored.checks[f"obj{i}.identity"] = identity_ok(gen[i], ref[i])
        m = magnitude_ok(gen[i], ref[i], obj.motion)
        if m is not None:
            scored.checks[f"obj{i}.magnitude"] = m
    if scene.collide:
        for i in range(len(scene.objects)):
            del scored.checks[f"obj{i}.motion"]
        scored.checks["relation"] = collide_ok(gen[0], gen[1])
    return scored


def score_extend(out: np.ndarray, real: np.ndarray, given: int, scene: SceneSpec, backward: bool) -> ClipReport:
    """The new frames plus the seam frame, in playing order, against the scene (the motion checked there: a
    backward extension of "moves up" must move up into the clip); continuity at the seam against the world's."""
    new = len(out) - given
    span = out[: new + 1] if backward else out[given - 1:]
    scored = analyze(span, scene)
    if backward:                          # reversed, the given frames come first: the forward seam check applies
        out, real = out[::-1], real[::-1]
    (gen,), (ref,) = tracks_of(out, scene), tracks_of(real, scene)
    for k, v in seam_checks(gen, ref, given - 1).items():
        scored.checks[f"seam_{k}"] = v
    scored.checks["obj0.identity"] = identity_ok(gen, ref)
    return scored


def score_loop(out: np.ndarray, clip: np.ndarray, scene: SceneSpec) -> ClipReport:
    """The bridge keeps the object (colour, shape, count, background: its motion is free), nothing jumps, and the
    wrap from the last frame to the first is an ordinary step (loop_wrap)."""
    scored = analyze(out[len(clip):], scene)
    del scored.checks["obj0.motion"]
    (gen,), (ref,) = tracks_of(out, scene), tracks_of(clip, scene)
    scored.checks["obj0.identity"] = identity_ok(gen, ref)
    scored.checks["loop_wrap"] = loop_seam_ok(out)
    return scored


def score_connect(out: np.ndarray, head: int, tail: int, a: np.ndarray, b: np.ndarray, scene: SceneSpec) -> ClipReport:
    """The transition keeps the object (colour, shape, count, background) and has no jump where it leaves a's
    frames (connect_start) or meets b's (connect_end): a step there within the clips' own largest step plus
    SEAM_POSITION; and no jump between."""
    scored = analyze(out[head:len(out) - tail], scene)
    del scored.checks["obj0.motion"]
    (gen,), (ref_a,), (ref_b,) = (tracks_of(v, scene) for v in (out, a, b))
    scored.checks["obj0.identity"] = identity_ok(gen, ref_a)
    for name, t, ref in (("start", head - 1, ref_a), ("end", len(out) - tail - 1, ref_b)):
        scored.checks[f"connect_{name}"] = _step_ok(gen, t, ref)
    return scored


def _step_ok(track, t: int, ref) -> bool:
    """The object is seen at frames t and t+1 and moves between them no more than ref's largest step + margin."""
    if not (track.present[t] and track.present[t + 1]):
        return False
    steps = np.linalg.norm(np.diff(ref.xy, axis=0), axis=1)
    limit = float(np.nanmax(steps)) if np.isfinite(steps).any() else JUMP_MARGIN
    return bool(np.linalg.norm(track.xy[t + 1] - track.xy[t]) <= limit + SEAM_POSITION)


# --- Running a case: the model's output and the world's reference, both scored ---

def _render(case: HardCase, frames: int, fps: float, seed_offset: int = 0) -> np.ndarray:
    return render_scene(case.scene, case.width, case.height, frames, fps, seed=case.render_seed + seed_offset).video


def _given_frames(pipe, cfg: SampleConfig) -> tuple[int, int]:
    """(frames of the given clip: the first half of a cfg-long clip, frames an extension adds), on the model's
    frame grid."""
    geo = pipe.geometry
    half = geo.frames_of(1 + (geo.latent_frames(pipe.num_frames(cfg)) - 1) // 2)
    return half, geo.frame_stride * geo.new_latents(MODE_SECONDS, cfg.fps)


def run_case(pipe, case: HardCase, cfg: SampleConfig, generate: bool = True, keep=None) -> ClipReport | None:
    """Scores the model's output for the case (generate=True) or the world's own reference (False; None where the
    world has none). cfg: the sampling settings; its size and length are the case's. keep(video): called with the
    scored output (a contact sheet's frames)."""
    c = replace(cfg, width=case.width, height=case.height, seconds=case.seconds)
    keep = keep or (lambda video: None)
    if case.section in TEXT_SECTIONS:
        real = _render(case, pipe.num_frames(c), c.fps)
        video = modes.text_to_video(pipe, case.prompt, c) if generate else real
        keep(video)
        return score_text(video, real, case.scene)
    if case.section.startswith("extend"):
        backward = case.section == "extend backward"
        given, new = _given_frames(pipe, c)
        real = _render(case, given + new, c.fps)
        clip = real[new:] if backward else real[:given]
        out = modes.extend(pipe, clip, case.prompt, replace(c, seconds=MODE_SECONDS), backward=backward) \
            if generate else real
        keep(out)
        return score_extend(out, real, given, case.scene, backward)
    clip = _render(case, pipe.num_frames(c), c.fps)
    if case.section == "loop":
        out = modes.loop(pipe, clip, case.prompt, replace(c, seconds=MODE_SECONDS)) if generate \
            else np.concatenate([clip, clip[-2:0:-1]])                     # forwards then backwards: a true loop
        keep(out)
        return score_loop(out, clip, case.scene)
    if not generate:
        return None
    b = _render(case, pipe.num_frames(c), c.fps, seed_offset=1)                   # the same prompt, placed elsewhere
    out = modes.connect(pipe, clip, b, case.prompt, replace(c, seconds=MODE_SECONDS))
    keep(out)
    head = pipe.geometry.frames_of(2)                                      # connect's context: 1 + 1 latent frames
    tail = len(out) - head - pipe.geometry.frame_stride * pipe.geometry.new_latents(MODE_SECONDS, c.fps)
    return score_connect(out, head, tail, clip, b, case.scene)


def world_passes(pipe, cfg: SampleConfig, refs: dict | None = None):
    """feasible(case) for hard_cases: the world's reference passes every check of its section (for connect, both
    world clips pass the easy checks). refs: filled with each accepted case's reference report (or None)."""
    def feasible(case: HardCase) -> bool:
        ref = run_case(pipe, case, cfg, generate=False)
        if ref is None:
            c = replace(cfg, width=case.width, height=case.height, seconds=case.seconds)
            ok = all(all(analyze(_render(case, pipe.num_frames(c), c.fps, k), case.scene).checks.values()) for k in (0, 1))
        else:
            ok = all(ref.checks.values())
        if ok and refs is not None:
            refs[case] = ref
        return ok
    return feasible


def evaluate_hard(pipe, holdout: tuple[str, ...], cfg: SampleConfig, limit: int = 2, seed: int = 0,
                  sections=SECTIONS, progress=None, roundtrip_fn=None) -> dict:
    """Every section's cases, generated and scored, with the world's references scored beside them.
    cfg: the sampling settings (each section sets its own size and length); progress: the one progress callback
    (runtime.report) after each case, with its score. roundtrip_fn(video) -> video: the model's autoencoder; the
    world's clip of each text-to-video case through it is scored too ("autoencoder": the share that passes every
    check, the ceiling of the model's all-pass rate, since everything it makes is decoded by that autoencoder)."""
    refs: dict = {}
    cases, redraws = hard_cases(limit, holdout, seed, sections, feasible=world_passes(pipe, cfg, refs))
    rows = []
    for i, case in enumerate(cases):
        gen = run_case(pipe, case, replace(cfg, seed=cfg.seed + i))
        ref = refs[case]
        rows.append({"section": case.section, "split": case.split, "prompt": case.prompt,
                     "size": f"{case.width}x{case.height}", "seconds": case.seconds, "score": gen.score,
                     "all_pass": all(gen.checks.values()), "checks": {k: bool(v) for k, v in gen.checks.items()},
                     "real_score": None if ref is None else ref.score,
                     "autoencoder_all_pass": _roundtrip_passes(pipe, case, cfg, roundtrip_fn)})
        report(progress, case.section, i + 1, len(cases), score=gen.score)
    return {"limit": limit, "sections": summarise_hard(rows), "redraws": redraws, "clips": rows}


def _roundtrip_passes(pipe, case: HardCase, cfg: SampleConfig, roundtrip_fn) -> bool | None:
    """Whether the world's clip of a text-to-video case, through the autoencoder, passes every check (None: not a
    text case, or no autoencoder)."""
    if roundtrip_fn is None or case.section not in TEXT_SECTIONS:
        return None
    real = _render(case, pipe.num_frames(replace(cfg, seconds=case.seconds)), cfg.fps)
    return all(score_text(roundtrip_fn(real), real, case.scene).checks.values())


def summarise_hard(rows: list[dict]) -> dict:
    """section -> split -> {clips, all_pass, adherence, by_check, real, autoencoder}; plus "all" over every
    section."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["section"], r["split"])].append(r)
        groups[("all", r["split"])].append(r)
    out: dict = defaultdict(dict)
    for (section, split), rs in groups.items():
        by_check = defaultdict(list)
        for r in rs:
            for k, v in r["checks"].items():
                by_check[k.split(".")[-1]].append(v)
        real = [r["real_score"] for r in rs if r["real_score"] is not None]
        ae = [r["autoencoder_all_pass"] for r in rs if r.get("autoencoder_all_pass") is not None]
        out[section][split] = {"clips": len(rs), "all_pass": float(np.mean([r["all_pass"] for r in rs])),
                               "adherence": float(np.mean([r["score"] for r in rs])),
                               "by_check": {k: float(np.mean(v)) for k, v in sorted(by_check.items())},
                               "real": float(np.mean(real)) if real else None,
                               "autoencoder": float(np.mean(ae)) if ae else None}
    return {k: out[k] for k in [*dict.fromkeys(r["section"] for r in rows), "all"] if k in out}


def hard_table(sections: dict):
    """A rich table of summarise_hard's result: one row per section and split, the weakest checks named."""
    from rich.table import Table
    table = Table("hard section", "split", "clips", "all\npass", "adherence", "world", "autoencoder\nall pass",
                  "weakest checks")
    for section, splits in sections.items():
        for split, r in splits.items():
            weak = sorted(r["by_check"].items(), key=lambda kv: kv[1])[:3]
            table.add_row(section, split, str(r["clips"]), f"{r['all_pass']:.2f}", f"{r['adherence']:.3f}",
                          *("-" if r.get(k) is None else f"{r[k]:.2f}" for k in ("real", "autoencoder")),
                          ", ".join(f"{k} {v:.2f}" for k, v in weak if v < 1))
    return table

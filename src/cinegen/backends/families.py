"""The open-weights families cinegen runs through diffusers: which diffusers class does which mode, and each
family's recommended defaults, in one table.

A folder's `model_index.json` names its pipeline class; one folder can serve several classes, since a diffusers
pipeline built from another's components (`from_pipe`) shares them without a copy. What a class can condition on
decides the modes:

    t2v     text -> video                    text, image (one frame)
    first   a first frame (I2V)              animate at start
    ends    first and last frame (FLF2V)     connect, loop
    any     frames anywhere (VACE, LTX cond.) animate start/end, extend both ways, connect, loop, keyframes
    v2v     a whole clip, with a strength    edit
    mask    a clip and a per-pixel mask (VACE) inpaint
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Wan's recommended negative prompt (the Wan2.1/2.2 repositories' default, in Chinese as the models were trained)
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                "丑陋，残缺，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
                "杂乱的背景，三条腿，背景人很多，倒着走")
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"


@dataclass(frozen=True)
class Family:
    """A family's recommended sampling defaults (used for every option the user did not set) and its classes."""
    label: str
    fps: float
    steps: int
    guidance: float
    negative_prompt: str = ""
    guidance_note: str = "classifier-free guidance"
    classes: dict = field(default_factory=dict)       # condition kind -> diffusers class name
    text_tokens: int = 512                            # prompt tokens the pipeline pads to (estimates count them)


FAMILIES = {
    # Wan2.1/2.2: 16 fps (TI2V-5B: 24, set below), UniPC/flow-matching schedulers as shipped (flow shift in the
    # folder's scheduler config: 3.0 for 480p, 5.0 for 720p)
    "wan": Family("Wan", 16.0, 50, 5.0, WAN_NEGATIVE, classes={
        "t2v": "WanPipeline", "first": "WanImageToVideoPipeline", "ends": "WanImageToVideoPipeline",
        "any": "WanVACEPipeline", "v2v": "WanVideoToVideoPipeline", "mask": "WanVACEPipeline"}),
    "ltx": Family("LTX-Video", 24.0, 50, 3.0, LTX_NEGATIVE, text_tokens=128, classes={
        "t2v": "LTXPipeline", "first": "LTXImageToVideoPipeline", "any": "LTXConditionPipeline",
        "v2v": "LTXConditionPipeline"}),
    "cogvideox": Family("CogVideoX", 8.0, 50, 6.0, text_tokens=226, classes={
        "t2v": "CogVideoXPipeline", "first": "CogVideoXImageToVideoPipeline", "v2v": "CogVideoXVideoToVideoPipeline"}),
    "hunyuan": Family("HunyuanVideo", 24.0, 50, 6.0, text_tokens=256,
                      guidance_note="embedded (distilled) guidance, no negative prompt; I2V (no guidance "
                                    "embedding): classifier-free guidance against the negative prompt",
                      classes={"t2v": "HunyuanVideoPipeline", "first": "HunyuanVideoImageToVideoPipeline",
                               "ends": "HunyuanVideoFramepackPipeline"}),
}

# the family of each pipeline class a folder may name
FOLDER_CLASSES = {
    "WanPipeline": "wan", "WanImageToVideoPipeline": "wan", "WanVACEPipeline": "wan", "WanVideoToVideoPipeline": "wan",
    "LTXPipeline": "ltx", "LTXImageToVideoPipeline": "ltx", "LTXConditionPipeline": "ltx",
    "CogVideoXPipeline": "cogvideox", "CogVideoXImageToVideoPipeline": "cogvideox",
    "CogVideoXVideoToVideoPipeline": "cogvideox",
    "HunyuanVideoPipeline": "hunyuan", "HunyuanVideoImageToVideoPipeline": "hunyuan",
    "HunyuanVideoFramepackPipeline": "hunyuan",
}

# which condition kinds each mode can run on, in order of preference
MODE_KINDS = {
    "text": ("t2v", "any"), "image": ("t2v", "any"), "animate": ("first", "any"), "animate-end": ("any",),
    "extend": ("any",), "connect": ("ends", "any"), "loop": ("ends", "any"), "keyframes": ("any",), "edit": ("v2v",),
    "inpaint": ("mask",),        # LTX's conditions, the I2V and V2V classes take whole frames only: no pixel masks
}


def kinds_of(folder_class: str, transformer_config: dict, pipe_config: dict) -> dict[str, str]:
    """{condition kind: class name} that a folder of `folder_class` serves, from its own class and those
    `from_pipe` builds validly from its components (same transformer inputs). transformer_config/pipe_config:
    the folder's transformer/config.json and model_index.json."""
    family = FAMILIES[FOLDER_CLASSES[folder_class]]
    c = family.classes
    two_experts = pipe_config.get("boundary_ratio") is not None
    match folder_class:
        case "WanPipeline":                # Wan2.1/2.2 T2V; TI2V-5B (expand_timesteps) also animates a first frame
            kinds = {"t2v": c["t2v"]}
            if pipe_config.get("expand_timesteps"):
                kinds["first"] = c["first"]
            elif not two_experts:          # WanVideoToVideoPipeline has one transformer and the 8x VAE
                kinds["v2v"] = c["v2v"]
        case "WanImageToVideoPipeline":    # FLF2V is trained on first+last (its image tokens are twice as many)
            kinds = {"ends": c["ends"]} if transformer_config.get("pos_embed_seq_len") else {"first": c["first"]}
        case "WanVACEPipeline":
            kinds = {"t2v": folder_class, "any": folder_class, "mask": folder_class}
        case "WanVideoToVideoPipeline":
            kinds = {"t2v": c["t2v"], "v2v": folder_class}
        case "LTXPipeline" | "LTXImageToVideoPipeline" | "LTXConditionPipeline":   # one set of components
            kinds = {k: c[k] for k in ("t2v", "first", "any", "v2v")}
        case "CogVideoXPipeline" | "CogVideoXVideoToVideoPipeline":
            kinds = {"t2v": c["t2v"], "v2v": c["v2v"]}
        case "CogVideoXImageToVideoPipeline":
            kinds = {"first": folder_class}
        case "HunyuanVideoImageToVideoPipeline":
            kinds = {"first": folder_class}
        case "HunyuanVideoFramepackPipeline":
            kinds = {"first": folder_class, "ends": folder_class}
        case _:
            kinds = {"t2v": folder_class}
    return kinds


def modes_of(kinds: dict) -> tuple[str, ...]:
    """The request modes (requests.MODES keys) that these condition kinds serve."""
    from cinegen.requests import MODES
    return tuple(m for m in MODES if any(k in kinds for k in MODE_KINDS[m]))


def family_defaults(family: str, pipe_config: dict) -> dict:
    """The SampleConfig fields a family recommends: {fps, steps, guidance, negative_prompt}."""
    f = FAMILIES[family]
    fps = f.fps
    if family == "wan" and pipe_config.get("expand_timesteps"):                      # Wan2.2-TI2V-5B: 24 fps
        fps = 24.0
    if pipe_config.get("_class_name") == "HunyuanVideoFramepackPipeline":            # FramePack: 30 fps
        fps = 30.0
    return {"fps": fps, "steps": f.steps, "guidance": f.guidance, "negative_prompt": f.negative_prompt}

"""Open weights from a local Diffusers folder (Wan2.1/2.2, LTX-Video, CogVideoX, HunyuanVideo) behind the backend
interface: every mode the family's diffusers classes can do, on the folder's own frame and size rules.

    cinegen generate --model /path/to/Wan2.1-T2V-1.3B-Diffusers "a red ball bounces" --size 832x480

Which class runs which mode is in families.py. Every mode is one of three calls: a text-to-video call, a
"window" whose frames are given at some positions (animate, extend, connect, loop, keyframes: VACE's masks, LTX's
conditions, an I2V's first frame, an FLF2V's first and last frame), or a video-to-video edit.

Nothing is ever downloaded: diffusers is called with local_files_only=True and HF_HUB_OFFLINE.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cinegen import defaults
from cinegen import requests as R
from cinegen.backends.base import Capabilities
from cinegen.backends.families import FAMILIES, FOLDER_CLASSES, MODE_KINDS, family_defaults, kinds_of, modes_of
from cinegen.config import LoraSpec, check_prompt
from cinegen.geometry import Geometry
from cinegen.runtime import default_device, report

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OFFLOADS = ("model", "sequential", "group")
QUANTIZE = ("int8wo",)            # torchao int8 weight-only: runs on CPUs and GPUs
# diffusers attention backends that run on a CPU (each run on one in tests/test_peers.py); the others are CUDA
# kernels (cuDNN, memory-efficient, flash-attn, sage, xformers) or other accelerators' (NPU, XLA)
CPU_ATTENTION = ("native", "_native_math", "_native_flash", "flex")
FRAMEPACK_WINDOW = 9              # FramePack's latent_window_size as released: each section adds 4 * 9 frames


def is_diffusers_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "model_index.json").is_file()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class FolderInfo:
    """What a folder is, from its JSON files alone (no weights read): `cinegen models`, the server's model list
    and mode checks use it without loading anything."""
    path: Path
    folder_class: str
    family: str
    kinds: dict
    pipe_config: dict
    transformer_config: dict
    vae_config: dict

    @classmethod
    def read(cls, path: str | Path) -> "FolderInfo":
        path = Path(path)
        index = _read_json(path / "model_index.json")
        name = index.get("_class_name", "")
        if name not in FOLDER_CLASSES:
            raise ValueError(f"{path} holds a {name or 'unnamed'} pipeline; cinegen runs these Diffusers pipelines: "
                             f"{', '.join(FOLDER_CLASSES)}")
        transformer = _read_json(path / "transformer" / "config.json")
        return cls(path, name, FOLDER_CLASSES[name], kinds_of(name, transformer, index), index, transformer,
                   _read_json(path / "vae" / "config.json"))

    @property
    def modes(self) -> tuple[str, ...]:
        return modes_of(self.kinds)

    def defaults(self) -> dict:
        return family_defaults(self.family, self.pipe_config)

    def geometry(self) -> Geometry:
        """Frame grid and size multiples from the VAE's and the transformer's configs (what the pipeline derives
        from them when loaded; `DiffusersBackend.pipe` checks that the two agree)."""
        t, s = _vae_factors(self.family, self.vae_config)
        patch = self.transformer_config.get("patch_size", 2)
        ph, pw = (patch, patch) if isinstance(patch, int) else patch[1:]
        if self.family == "cogvideox" and self.transformer_config.get("patch_size_t") is None:
            t *= 2               # CogVideoX 1.0's VAE decodes an odd number of latent frames: 1 + 8k pixel frames
        if self.folder_class == "HunyuanVideoFramepackPipeline":    # sections of FRAMEPACK_WINDOW latent frames
            t *= FRAMEPACK_WINDOW
        if self.family == "ltx":     # LTX pipelines take multiples of 32 whatever the VAE (the released one's cell)
            ph, pw = max(ph, 32 // s), max(pw, 32 // s)
        return Geometry(frame_stride=int(t), cell=int(s), patch=(1, int(ph), int(pw)), fps=self.defaults()["fps"])

    def estimate_configs(self):
        """(DiTConfig, VAEConfig, text tokens) of the same width, depth, heads, patch and compression, for
        cinegen.estimate: the FLOPs of a cinegen DiT and VAE of this size (an approximation of the family's
        own blocks, which differ in detail: HunyuanVideo's single-stream blocks, LTX's wider VAE)."""
        import math

        from cinegen.config import DiTConfig, VAEConfig
        t = self.transformer_config
        heads = t.get("num_attention_heads", 1)
        width = heads * t.get("attention_head_dim", 64)
        patch = t.get("patch_size", 2)
        ph, pw = (patch, patch) if isinstance(patch, int) else patch[1:]
        tf, sf = _vae_factors(self.family, self.vae_config)
        z = self.vae_config.get("z_dim") or self.vae_config.get("latent_channels", 16)
        dit = DiTConfig(latent_channels=z, patch=(1, ph, pw), width=width, heads=heads,
                        depth=t.get("num_layers", 1) + t.get("num_single_layers", 0),
                        mlp_ratio=(t.get("ffn_dim") or 4 * width) / width, conditioning=False,
                        text_dim=t.get("text_dim") or t.get("caption_channels") or t.get("text_embed_dim") or 4096)
        down_s, down_t = int(math.log2(sf)), int(math.log2(tf))
        vae = VAEConfig(latent_channels=z, patch=1, spatial_down=down_s, temporal_down=down_t, res_blocks=2,
                        channels=(96, 192, 384, 384, 384, 384, 384)[: 1 + max(down_s, down_t)])
        return dit, vae, FAMILIES[self.family].text_tokens


@dataclass(frozen=True)
class LoadOptions:
    """How to load and run a Diffusers pipeline (the CLI's --dtype, --offload, ... ; a server's models.toml)."""
    device: str | None = None
    dtype: str | None = None                 # bf16 | fp16 | fp32 (default: bf16 on a GPU, fp32 on a CPU)
    offload: str | None = None               # model | sequential | group (CUDA only)
    vae_tiling: bool = False
    loras: tuple[LoraSpec, ...] = ()
    quantize: str | None = None              # int8wo (torchao weight-only int8)
    attention: str | None = None             # a diffusers attention backend (native, flash, sage, ...)
    compile: bool = False

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"bad --dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.offload is not None and self.offload not in OFFLOADS:
            raise ValueError(f"bad --offload {self.offload!r}; choose one of {', '.join(OFFLOADS)}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise ValueError(f"bad --quantize {self.quantize!r}; choose one of {', '.join(QUANTIZE)}")
        for lora in self.loras:
            if not isinstance(lora, LoraSpec):
                raise ValueError(f"loras must be LoraSpec values (config.parse_lora), got {lora!r}")
        if self.attention is not None:
            check_attention(self.attention)


def check_attention(name: str) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName
    allowed = [b.value for b in AttentionBackendName if not b.value.endswith("_hub")]    # hub kernels download
    if name not in allowed:
        raise ValueError(f"bad --attention {name!r}; choose one of {', '.join(allowed)}")


def _vae_factors(family: str, vae: dict) -> tuple[int, int]:
    """(temporal, spatial) compression of a family's VAE config, as its diffusers class computes them."""
    if family == "wan":
        return vae.get("scale_factor_temporal") or 4, vae.get("scale_factor_spatial") or 8
    if family == "ltx":
        n = 2 ** sum(vae.get("spatio_temporal_scaling", (True, True, True, False)))
        return (vae.get("temporal_compression_ratio") or vae.get("patch_size_t", 1) * n,
                vae.get("spatial_compression_ratio") or vae.get("patch_size", 4) * n)
    if family == "cogvideox":
        return vae.get("temporal_compression_ratio", 4), 2 ** (len(vae.get("block_out_channels", (0,) * 4)) - 1)
    return vae.get("temporal_compression_ratio", 4), vae.get("spatial_compression_ratio", 8)


def loaded_factors(pipe) -> tuple[int, int]:
    """(temporal, spatial) compression a loaded pipeline uses."""
    t = getattr(pipe, "vae_scale_factor_temporal", None) or pipe.vae_temporal_compression_ratio
    s = getattr(pipe, "vae_scale_factor_spatial", None) or pipe.vae_spatial_compression_ratio
    return int(t), int(s)


class DiffusersBackend:
    """A Diffusers folder behind the backend interface; the classes for other modes are built on first use."""

    OPTIONS = frozenset(f for f in LoadOptions.__dataclass_fields__)

    def __init__(self, info: FolderInfo, options: LoadOptions = LoadOptions(), device: str = "cpu"):
        """No weights are read here: the pipeline loads on first use, so that a request the model cannot serve
        is refused at once (check), from the folder's JSON files alone."""
        self.info, self.options, self.device, self.name = info, options, device, info.path.name
        self.defaults = info.defaults()
        self.capabilities = Capabilities(info.modes, info.geometry())
        self._pipes: dict = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, **options) -> "DiffusersBackend":
        from cinegen.extras import require
        require("diffusers", "peers", f"{path} (a Diffusers pipeline)")
        opts = LoadOptions(**options)
        device = opts.device or default_device()
        if opts.offload and device != "cuda":
            raise ValueError(f"--offload {opts.offload} moves weights between a CUDA GPU and the CPU; "
                             f"this run is on {device}")
        if opts.attention and device == "cpu" and opts.attention not in CPU_ATTENTION:
            raise ValueError(f"--attention {opts.attention} runs on a GPU; this run is on cpu: use one of "
                             f"{', '.join(CPU_ATTENTION)}")
        if opts.quantize:
            require("torchao", "peers", f"--quantize {opts.quantize}")
        for lora in opts.loras:
            if not Path(lora.path).is_file():
                raise FileNotFoundError(f"--lora file not found: {lora.path}")
        return cls(FolderInfo.read(path), opts, device)

    def estimate_configs(self):
        return self.info.estimate_configs()

    @property
    def pipe(self):
        """The folder's own pipeline, loaded (with the load options applied) on first use."""
        name = self.info.folder_class
        if name not in self._pipes:
            self._pipes[name] = _load(self.info, self.options, self.device)
            got, said = loaded_factors(self._pipes[name]), _vae_factors(self.info.family, self.info.vae_config)
            if got != tuple(said):
                raise RuntimeError(f"{self.name}: the loaded VAE compresses {got}, its config says {said}")
        return self._pipes[name]

    # --- checks and the request's honest geometry ---

    def _kind(self, request: R.Request) -> str:
        """The condition kind that runs `request` (families.MODE_KINDS), or a ValueError naming what can."""
        key = "animate-end" if isinstance(request, R.Animate) and request.at == "end" else request.mode
        for kind in MODE_KINDS[key]:
            if kind in self.info.kinds:
                return kind
        what = {"animate-end": "animate at the end"}.get(key, repr(key))
        raise ValueError(f"model {self.name} ({self.info.folder_class}) cannot do {what}; it can do: "
                         f"{', '.join(self.capabilities.modes)}" + (" (animate at the start only)"
                                                                  if key == "animate-end" else ""))

    def check(self, request: R.Request) -> None:
        self.capabilities.check_mode(request, self.name)
        self._kind(request)
        check_prompt(request.prompt)
        cfg = request.sample
        self.check_size(cfg.width, cfg.height)
        if cfg.solver != defaults.SOLVER:
            raise ValueError(f"--solver {cfg.solver} applies to cinegen models; {self.name} samples with its own "
                             f"scheduler ({self.info.pipe_config.get('scheduler', ['', 'its own'])[1]})")
        if cfg.cache:
            raise ValueError(f"--cache {cfg.cache:g} applies to cinegen models, not to the Diffusers pipeline {self.name}")
        if cfg.guidance_high is not None and self.info.pipe_config.get("boundary_ratio") is None:
            raise ValueError(f"guidance_high={cfg.guidance_high} needs a model with a high-noise expert "
                             f"(Wan2.2 A14B); {self.name} has one transformer")
        if self._distilled_guidance and cfg.negative_prompt:
            raise ValueError(f"{self.name} is HunyuanVideo, whose guidance is distilled into the model: it takes "
                             f"no negative prompt (--negative)")

    @property
    def _distilled_guidance(self) -> bool:
        """HunyuanVideo's guidance is an input of the transformer (guidance_embeds), with no negative prompt;
        HunyuanVideo-I2V (latent_concat) has none, and guides the classic way (diffusers' true_cfg_scale)."""
        return self.info.family == "hunyuan" and self.info.transformer_config.get("guidance_embeds", True)

    @property
    def _fixed_size(self) -> tuple[int, int] | None:
        """CogVideoX-5b-I2V's one trained size (learned positional embeddings); None: any size on the grid."""
        t = self.info.transformer_config
        if t.get("use_learned_positional_embeddings"):
            return t["sample_width"] * self.capabilities.geometry.cell, t["sample_height"] * self.capabilities.geometry.cell
        return None

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        return self._fixed_size or self.capabilities.geometry.nearest_size(width, height)

    def check_size(self, width: int, height: int) -> None:
        geo = self.capabilities.geometry
        if self._fixed_size:
            w, h = self._fixed_size
            if (width, height) != (w, h):
                raise ValueError(f"{self.name} renders {w}x{h} only (learned positional embeddings), "
                                 f"got {width}x{height}")
            return
        for name, v, m in (("width", width, geo.width_multiple), ("height", height, geo.height_multiple)):
            if v % m:
                lo = max(m, v // m * m)
                raise ValueError(f"{name} {v} is not a multiple of {m}, which {self.name} needs; use {lo} or {lo + m}")

    def prepare(self, request: R.Request, unset=frozenset()) -> tuple[R.Request, list[str]]:
        """The request this model will render exactly, and warnings saying what changed: the family's defaults
        for the sampling fields in `unset` (those the user did not set), and a duration rounded to the frame
        grid (1 + stride*k frames). Sizes are never changed (check refuses them)."""
        cfg = request.sample
        cfg = replace(cfg, **{k: v for k, v in self.defaults.items() if k in unset})
        notes = []
        stride = self.capabilities.geometry.frame_stride
        if not isinstance(request, (R.Image, R.Edit, R.Inpaint)):
            new = cfg.seconds * cfg.fps
            k = max(1, round(new / stride))
            if abs(new - stride * k) > 1e-6:
                seconds = stride * k / cfg.fps
                notes.append(f"{self.name} renders 1 + {stride}k frames: {cfg.seconds:g} s at {cfg.fps:g} fps "
                             f"({new:.3g} new frames) rounded to {seconds:.4g} s ({stride * k} new frames)")
                cfg = replace(cfg, seconds=seconds)
        if isinstance(request, (R.Edit, R.Inpaint)):
            n = len(request.video)
            keep = self.capabilities.geometry.on_grid(n)
            if keep != n:
                notes.append(f"{self.name} renders 1 + {stride}k frames: the clip's {n} frames are trimmed to {keep}")
        return replace(request, sample=cfg), notes

    # --- rendering ---

    def warnings(self, request: R.Request) -> list[str]:
        """None: open weights ship no training vocabulary, and their pipelines handle their own token windows."""
        return []

    def batch_key(self, request: R.Request) -> None:
        """Never batched: each request is one pipeline call with its own seed generator, so a server renders
        Diffusers jobs one at a time (batching them is future work: the pipelines take lists of prompts and
        generators, but their schedulers and offload hooks are not yet checked to give each its lone result)."""
        return None

    def generate(self, request: R.Request, progress=None) -> np.ndarray:
        request, notes = self.prepare(request)
        for note in notes:
            log.warning(note)
        self.check(request)
        cfg, kind = request.sample, self._kind(request)
        geo = self.capabilities.geometry
        clip = lambda v: _fit(v, cfg)                                            # noqa: E731
        match request:
            case R.Text() | R.Image():
                n = 1 if isinstance(request, R.Image) else geo.frames(cfg.seconds, cfg.fps)
                out = self._call(kind, request, progress, num_frames=n)
                return out[0] if isinstance(request, R.Image) else out
            case R.Animate():
                n = geo.frames(cfg.seconds, cfg.fps)
                image = clip(request.image[None])[0]
                return self._window(kind, request, progress, n, {0 if request.at == "start" else n - 1: image})
            case R.Keyframes():
                n = geo.frames(cfg.seconds, cfg.fps)
                bad = [f for f, _ in request.keyframes if f >= n]
                if bad:
                    raise ValueError(f"keyframe at frame {bad[0]} is past the clip's last frame ({n - 1})")
                return self._window(kind, request, progress, n, {f: clip(im[None])[0] for f, im in request.keyframes})
            case R.Extend():
                return self._extend(kind, request, clip(request.video), progress)
            case R.Connect():
                return self._connect(kind, request, clip(request.video), clip(request.video_b), request.bridge_only,
                                     progress)
            case R.Loop():
                v = clip(request.video)
                return np.concatenate([v, self._connect(kind, request, v, v, True, progress)])
            case R.Edit():
                return self._edit(kind, request, clip(request.video)[: geo.on_grid(len(request.video))], progress)
            case R.Inpaint():
                return self._inpaint(kind, request, progress)
        raise ValueError(f"unknown request {type(request).__name__}")

    def _edit(self, kind, request: R.Edit, clip: np.ndarray, progress) -> np.ndarray:
        if self.info.family != "ltx":
            return self._call(kind, request, progress, video=_pil(clip), strength=request.strength)
        # LTXConditionPipeline edits from given latents (a `video` there is a hard condition, not a start)
        pipe, cfg = self._pipe_for(kind), request.sample
        video = pipe.video_processor.preprocess_video(_pil(clip), cfg.height, cfg.width)
        with torch.no_grad():
            latents = pipe.vae.encode(video.to(pipe.vae.device, pipe.vae.dtype)).latent_dist.mode()
        latents = pipe._normalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std)
        return self._call(kind, request, progress, num_frames=len(clip), latents=latents.float(),
                          denoise_strength=request.strength)

    def _inpaint(self, kind, request: R.Inpaint, progress) -> np.ndarray:
        """VACE inpainting: the clip with its masked pixels grey (VACE's "to generate" value, as in _window) and
        the mask (white = generate). VACE redraws every pixel it renders (it is conditioned on the kept ones, it
        does not copy them), so the kept pixels are pasted back from the clip: outside the mask it is unchanged."""
        cfg, n = request.sample, self.capabilities.geometry.on_grid(len(request.video))
        video = _fit(request.video[:n], cfg)
        white = request.mask_video()[:n, :, :, None].repeat(3, axis=3).astype(np.uint8) * 255
        mask = _fit(white, cfg).mean(axis=3, keepdims=True) >= R.MASK_THRESHOLD        # (n, H, W, 1), resized
        grey = np.where(mask, np.uint8(127), video)
        out = self._call(kind, request, progress, num_frames=n, video=_pil(grey),
                         mask=_pil(np.repeat(mask, 3, axis=3).astype(np.uint8) * 255))
        return np.where(mask, out, video)

    def _context(self, available: int, new: int) -> int:
        """Frames of an input clip given as context: 1 + stride*j, at most the clip and about the new frames."""
        stride = self.capabilities.geometry.frame_stride
        return 1 + stride * max(0, min((available - 1) // stride, new // stride))

    def _extend(self, kind, request: R.Extend, clip: np.ndarray, progress) -> np.ndarray:
        """The clip's last frames (backward: its first) as context, the new frames after (before) them."""
        new = self._new_frames(request.sample)
        c = self._context(len(clip), new)
        if request.backward:
            window = self._window(kind, request, progress, c + new, {new + i: f for i, f in enumerate(clip[:c])})
            return np.concatenate([window[:new], clip])
        window = self._window(kind, request, progress, c + new, dict(enumerate(clip[len(clip) - c:])))
        return np.concatenate([clip, window[c:]])

    def _connect(self, kind, request, a: np.ndarray, b: np.ndarray, bridge_only: bool, progress) -> np.ndarray:
        """The window from a's last frames to b's first ones (FLF2V: one frame each), or only its new frames."""
        new = self._new_frames(request.sample)
        if kind == "ends":                              # first and last frame: the bridge is the frames between
            ca, cb, new = 1, 1, new - 1
        elif self.info.family == "ltx":                 # LTX keeps 1 + 8j frames of a run that does not start the
            ca, cb, new = self._context(len(a), new), 1, new - 1     # clip: b enters as its first frame
        else:
            ca = self._context(len(a), new)
            cb = max(0, self._context(len(b), new) - 1)
        n = ca + new + cb
        given = dict(enumerate(a[len(a) - ca:])) | {ca + new + i: f for i, f in enumerate(b[:cb])}
        window = self._window(kind, request, progress, n, given)
        return window[ca:ca + new] if bridge_only else window

    def _new_frames(self, cfg) -> int:
        stride = self.capabilities.geometry.frame_stride
        return stride * max(1, round(cfg.seconds * cfg.fps / stride))

    def _window(self, kind: str, request, progress, n: int, given: dict) -> np.ndarray:
        """n frames with `given` {index: frame} held: the one call every conditioned mode makes."""
        if kind == "first":
            if set(given) != {0}:
                raise ValueError(f"{self.name} conditions on a first frame only")
            return self._call(kind, request, progress, num_frames=n, image=_pil(given[0][None])[0])
        if kind == "ends":
            if set(given) != {0, n - 1}:
                raise ValueError(f"{self.name} conditions on a first and a last frame only")
            return self._call(kind, request, progress, num_frames=n, image=_pil(given[0][None])[0],
                              last_image=_pil(given[n - 1][None])[0])
        if self.info.family == "wan":                  # VACE: a grey video with masks (white = generate)
            cfg = request.sample
            video = np.full((n, cfg.height, cfg.width, 3), 127, np.uint8)
            mask = np.full((n, cfg.height, cfg.width, 3), 255, np.uint8)
            for i, f in given.items():
                video[i], mask[i] = f, 0
            return self._call(kind, request, progress, num_frames=n, video=_pil(video), mask=_pil(mask))
        return self._call(kind, request, progress, num_frames=n, conditions=self._ltx_conditions(given))

    def _ltx_conditions(self, given: dict) -> list:
        """LTX conditions: each run of consecutive given frames is one video (or image) condition at its index."""
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
        runs, out = [], []
        for i in sorted(given):
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            frames = _pil(np.stack([given[i] for i in run]))
            out.append(LTXVideoCondition(video=frames, frame_index=run[0]) if len(run) > 1
                       else LTXVideoCondition(image=frames[0], frame_index=run[0]))
        return out

    def _pipe_for(self, kind: str):
        name, base = self.info.kinds[kind], self.pipe
        if name not in self._pipes:
            import diffusers
            self._pipes[name] = getattr(diffusers, name).from_pipe(base)
        return self._pipes[name]

    def _call(self, kind: str, request: R.Request, progress, **inputs) -> np.ndarray:
        """One diffusers call with the request's sampling settings mapped to the class's own arguments."""
        import inspect
        pipe, cfg = self._pipe_for(kind), request.sample
        params = inspect.signature(pipe.__call__).parameters
        args = dict(prompt=request.prompt, height=cfg.height, width=cfg.width, num_inference_steps=cfg.steps,
                    guidance_scale=cfg.guidance, generator=torch.Generator().manual_seed(cfg.seed), output_type="np",
                    callback_on_step_end=_step_callback(progress))
        if self.info.family != "hunyuan":
            args["negative_prompt"] = cfg.negative_prompt or None
        elif not self._distilled_guidance:          # HunyuanVideo-I2V: guidance_scale would be ignored
            args.update(true_cfg_scale=cfg.guidance, guidance_scale=1.0, negative_prompt=cfg.negative_prompt or "")
        if self.info.pipe_config.get("boundary_ratio") is not None:
            # Wan2.2 A14B: guidance_scale guides the high-noise expert (t >= boundary), guidance_scale_2 the low one
            args["guidance_scale"] = cfg.guidance if cfg.guidance_high is None else cfg.guidance_high
            args["guidance_scale_2"] = cfg.guidance
        if "frame_rate" in params:                    # LTX conditions its RoPE on the frame rate
            args["frame_rate"] = cfg.fps
        if "max_sequence_length" in params and self.info.family == "cogvideox":
            args["max_sequence_length"] = pipe.transformer.config.max_text_seq_length
        args.update(inputs)
        if self.info.transformer_config.get("image_condition_type") == "latent_concat":
            args["num_frames"] += 4       # HunyuanVideo-I2V drops the 4 frames its image latent decodes to
        if "latent_window_size" in params:            # FramePack: num_frames counts sections of 4 * (window - 1) + 1
            sections = (args["num_frames"] - 1) // (4 * FRAMEPACK_WINDOW)
            args.update(latent_window_size=FRAMEPACK_WINDOW, num_frames=sections * (4 * (FRAMEPACK_WINDOW - 1) + 1))
        unknown = [k for k in args if k not in params]
        if unknown:                                   # a mapping bug, never a silently dropped setting
            raise ValueError(f"{type(pipe).__name__} takes no {', '.join(unknown)}")
        out = pipe(**args)
        frames = np.asarray(out.frames[0])            # (T, H, W, 3) float in [0, 1]
        want = inputs.get("num_frames", len(frames))
        if len(frames) != want:                       # the frame rules above are wrong for this folder: say so
            raise RuntimeError(f"{type(pipe).__name__} returned {len(frames)} frames for {want}")
        return (frames.clip(0, 1) * 255).round().astype(np.uint8)


def _step_callback(progress):
    def on_step(pipe, i, t, kwargs):
        report(progress, "sampling", i + 1, getattr(pipe, "num_timesteps", None) or i + 1, t=float(t) / 1000.0)
        return kwargs
    return on_step


def _fit(video: np.ndarray, cfg) -> np.ndarray:
    from cinegen.modes import fit_video
    return fit_video(video, cfg.width, cfg.height)


def _pil(frames: np.ndarray) -> list:
    from PIL import Image
    return [Image.fromarray(np.ascontiguousarray(f)) for f in frames]


def _load(info: FolderInfo, opts: LoadOptions, device: str):
    import diffusers
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dtype = DTYPES[opts.dtype] if opts.dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
    kwargs = {"quantization_config": _quantization(info, opts.quantize)} if opts.quantize else {}
    try:
        pipe = getattr(diffusers, info.folder_class).from_pretrained(str(info.path), local_files_only=True,
                                                                      dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the Diffusers pipeline in {info.path}: {e}") from None
    pipe.set_progress_bar_config(disable=True)         # cinegen draws its own bar from the step callback
    _apply_options(pipe, opts, device)
    return pipe


def _quantization(info: FolderInfo, method: str):
    """torchao weight-only int8 on the transformer(s), the part that holds most weights."""
    from diffusers import PipelineQuantizationConfig, TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig
    config = {"int8wo": Int8WeightOnlyConfig}[method]
    experts = ("transformer", "transformer_2") if info.pipe_config.get("transformer_2", [None])[0] else ("transformer",)
    return PipelineQuantizationConfig(quant_mapping={name: TorchAoConfig(config()) for name in experts})


def _apply_options(pipe, opts: LoadOptions, device: str) -> None:
    """LoRAs, attention backend, VAE tiling, compile, then placement (offload hooks or .to(device))."""
    if opts.loras:
        _load_loras(pipe, opts.loras)
    if opts.attention:
        for name in ("transformer", "transformer_2"):
            if getattr(pipe, name, None) is not None:
                try:
                    getattr(pipe, name).set_attention_backend(opts.attention)
                except RuntimeError as e:           # its kernels' package is missing or too old: diffusers says which
                    raise ValueError(f"--attention {opts.attention}: {e}") from None
    if opts.vae_tiling:
        pipe.vae.enable_tiling()
    if opts.compile:
        for name in ("transformer", "transformer_2"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).compile()
    if opts.offload == "model":
        pipe.enable_model_cpu_offload()
    elif opts.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    elif opts.offload == "group":
        pipe.enable_group_offload(onload_device=torch.device("cuda"), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=True)
    else:
        pipe.to(device)


def _load_loras(pipe, loras: tuple[LoraSpec, ...]) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise ValueError(f"--lora: {type(pipe).__name__} loads no LoRA adapters")
    names = []
    for i, lora in enumerate(loras):
        path = Path(lora.path)
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=f"lora{i}",
                                   local_files_only=True)
        except (ValueError, KeyError, RuntimeError) as e:
            raise ValueError(f"--lora {lora.path} does not fit this model: {e}") from None
        names.append(f"lora{i}")
    pipe.set_adapters(names, [lora.scale for lora in loras])

"""Causal 3D convolutional video autoencoder (KL-regularised), chunkable in time.

Shapes: video (B, 3, T, H, W) float in [-1, 1] with T = 1 + 4k; latents (B, C, 1 + k, H/8, W/8).
The first frame is encoded alone and each later latent frame covers 4 frames (Open-Sora 2.0, Wan2.1), so a
single image is a 1-frame video and image and video share one latent space.

Causality: every temporal convolution sees only current and past frames (zero padding in front), so
perturbing future frames leaves earlier latents unchanged.

Chunking protocol (explicit state, no hidden module attributes): `encode(video, cache)` / `decode(z, cache)`
take a `cache` dict that each causal layer reads and updates in place with the frames it needs from the
previous chunk. Pass a fresh `{}` for the first chunk (frame 0 for encode, latent frame 0 for decode) and the
same dict for each following chunk. A whole clip is just one chunk, so chunked == whole (tests/test_vae.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cinegen.config import VAEConfig
from cinegen.models.layers import RMSNorm


class CausalConv3d(nn.Module):
    """3x3x3 conv, causal in time, with optional stride (st, ss, ss). Keeps its tail frames in the cache."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride_t: int = 1, stride_s: int = 1):
        super().__init__()
        self.kernel, self.stride_t = kernel, stride_t
        self.conv = nn.Conv3d(cin, cout, kernel, stride=(stride_t, stride_s, stride_s), padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        prev = cache.get(id(self)) if cache is not None else None
        if prev is None:                                                      # start of clip: zero history
            prev = x.new_zeros(*x.shape[:2], self.kernel - 1, *x.shape[3:])
        x = torch.cat([prev, x], dim=2)                                       # (B, C, k-1+T, H, W)
        n_out = (x.shape[2] - self.kernel) // self.stride_t + 1
        if cache is not None:                                                 # frames the next window starts at
            cache[id(self)] = x[:, :, n_out * self.stride_t:]
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = RMSNorm(cin, channel_dim=1), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = RMSNorm(cout, channel_dim=1), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Strided causal conv: 2x in time (1 + 2k -> 1 + k) and/or 2x in space."""

    def __init__(self, cin: int, cout: int, time: bool, space: bool):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, stride_t=2 if time else 1, stride_s=2 if space else 1)

    def forward(self, x, cache):
        return self.conv(x, cache)


class Upsample(nn.Module):
    """Nearest 2x in time (1 + k -> 1 + 2k: the first frame stays single) and/or space, then a causal conv."""

    def __init__(self, cin: int, cout: int, time: bool, space: bool):
        super().__init__()
        self.time, self.space = time, space
        self.conv = CausalConv3d(cin, cout)

    def forward(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        if self.time:
            first_chunk = cache is None or id(self) not in cache
            x = x.repeat_interleave(2, dim=2)                                 # (B, C, 2T, H, W)
            if first_chunk:
                x = x[:, :, 1:]                                               # (B, C, 2T-1, H, W)
            if cache is not None:
                cache[id(self)] = True
        if self.space:
            x = rearrange(F.interpolate(rearrange(x, "b c t h w -> (b t) c h w"), scale_factor=2.0, mode="nearest"),
                          "(b t) c h w -> b c t h w", b=x.shape[0])           # (B, C, T, 2H, 2W)
        return self.conv(x, cache)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, p = cfg.channels, cfg.patch
        self.patch = p
        self.conv_in = CausalConv3d(cfg.in_channels * p * p, ch[0])
        self.blocks = nn.ModuleList()
        for i in range(len(ch) - 1):
            self.blocks.extend(ResBlock(ch[i], ch[i]) for _ in range(cfg.res_blocks))
            self.blocks.append(Downsample(ch[i], ch[i + 1], time=i < cfg.temporal_down, space=i < cfg.spatial_down))
        self.blocks.extend(ResBlock(ch[-1], ch[-1]) for _ in range(cfg.res_blocks))
        self.norm_out = RMSNorm(ch[-1], channel_dim=1)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels)
        # Start the posterior nearly deterministic (std ~0.02). With the default init its std is ~1, and with a
        # small KL weight the decoder spends thousands of steps learning to see through that noise (blurry output).
        with torch.no_grad():
            self.conv_out.conv.weight[cfg.latent_channels:].zero_()
            self.conv_out.conv.bias[cfg.latent_channels:].fill_(-8.0)

    def forward(self, video: torch.Tensor, cache: dict | None) -> torch.Tensor:
        x = rearrange(video, "b c t (h p) (w q) -> b (c p q) t h w", p=self.patch, q=self.patch)   # (B, 3p², T, H/p, W/p)
        x = self.conv_in(x, cache)
        for block in self.blocks:
            x = block(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)                 # (B, 2C, T', h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, p = cfg.channels, cfg.patch
        self.patch, self.out_channels = p, cfg.in_channels
        n = cfg.decoder_res_blocks or cfg.res_blocks
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[-1])
        self.blocks = nn.ModuleList(ResBlock(ch[-1], ch[-1]) for _ in range(n))
        for i in reversed(range(len(ch) - 1)):
            self.blocks.append(Upsample(ch[i + 1], ch[i], time=i < cfg.temporal_down, space=i < cfg.spatial_down))
            self.blocks.extend(ResBlock(ch[i], ch[i]) for _ in range(n))
        self.norm_out = RMSNorm(ch[0], channel_dim=1)
        self.conv_out = CausalConv3d(ch[0], cfg.in_channels * p * p)

    def forward(self, z: torch.Tensor, cache: dict | None) -> torch.Tensor:
        x = self.conv_in(z, cache)
        for block in self.blocks:
            x = block(x, cache)
        h = F.silu(self.norm_out(x))                                          # (B, C0, T, H/p, W/p)
        return self.unpatch(self.conv_out(h, cache))                          # (B, 3, T, H, W)

    def unpatch(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=self.patch, q=self.patch)   # (B, c, T, H, W)


class VideoVAE(nn.Module):
    """encode: (B, 3, 1+4k, H, W) in [-1, 1] -> normalised latents (B, C, 1+k, H/8, W/8); decode inverts."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        c = cfg.latent_channels
        # on the CPU even when built on the meta device (load_vae): they come from the config, not the file
        mean = torch.tensor(cfg.latent_mean or [0.0] * c, device="cpu").view(1, c, 1, 1, 1)
        std = torch.tensor(cfg.latent_std or [1.0] * c, device="cpu").view(1, c, 1, 1, 1)
        self.register_buffer("latent_mean", mean, persistent=False)          # data statistics, saved in the config
        self.register_buffer("latent_std", std, persistent=False)

    def check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != self.cfg.in_channels:
            raise ValueError(f"video must be (B, {self.cfg.in_channels}, T, H, W), got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        f, s = self.cfg.temporal_factor, self.cfg.spatial_factor
        if (t - 1) % f:
            raise ValueError(f"frame count must be 1 + {f}k, got {t}")
        if h % s or w % s:
            raise ValueError(f"height and width must be multiples of {s}, got {h}x{w}")

    def encode_dist(self, video: torch.Tensor, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior (mean, logvar), each (B, C, T', h, w), before latent normalisation."""
        mean, logvar = self.encoder(video, cache).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, video: torch.Tensor, cache: dict | None = None, sample: bool = False,
               chunk_frames: int | None = None) -> torch.Tensor:
        """Normalised latents. chunk_frames (a multiple of 4) bounds memory by encoding that many frames at a time."""
        if cache is None:                                                     # whole clips only; chunks are any 4k
            self.check_video(video)
        if chunk_frames:
            cache = {} if cache is None else cache
            return torch.cat([self.encode(c, cache, sample)
                              for c in self._chunks(video, chunk_frames, self.cfg.temporal_factor)], dim=2)
        mean, logvar = self.encode_dist(video, cache)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return (z - self.latent_mean) / self.latent_std

    def decode(self, latents: torch.Tensor, cache: dict | None = None, chunk_frames: int | None = None) -> torch.Tensor:
        """(B, C, 1+k, h, w) normalised latents -> (B, 3, 1+4k, H, W) in about [-1, 1]. chunk_frames: latent frames per chunk."""
        if chunk_frames:
            cache = {} if cache is None else cache
            return torch.cat([self.decode(c, cache) for c in self._chunks(latents, chunk_frames, 1)], dim=2)
        return self.decoder(latents * self.latent_std + self.latent_mean, cache)

    @staticmethod
    def _chunks(x: torch.Tensor, size: int, multiple: int):
        """Frame 0 alone (it has no past), then `size` frames at a time (a multiple of `multiple`)."""
        if size % multiple:
            raise ValueError(f"chunk size must be a multiple of {multiple}, got {size}")
        yield x[:, :, :1]
        for start in range(1, x.shape[2], size):
            yield x[:, :, start:start + size]

    def decode_chunks(self, latents: torch.Tensor, chunk_frames: int = 1):
        """Yields decoded pixel chunks in order; peak memory is bounded by one chunk (for long videos)."""
        cache: dict = {}
        for c in self._chunks(latents, chunk_frames, 1):
            yield self.decode(c, cache)

    def forward(self, video: torch.Tensor, latents: torch.Tensor | None = None):
        """Training pass: (reconstruction, mean, logvar), sampling the posterior. latents: normalised latents to
        decode instead of the video's own (a decoder trained on a DiT's latents); mean and logvar are then None.
        (Through forward, not decode, so that DDP sees the pass.)"""
        if latents is not None:
            return self.decode(latents), None, None
        mean, logvar = self.encode_dist(video)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return self.decoder(z, None), mean, logvar

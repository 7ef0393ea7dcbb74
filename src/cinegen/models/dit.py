"""Video diffusion transformer over spacetime patches (DiT with adaLN-Zero, QK-norm, 3D RoPE, cross-attention).

Shapes: latents (B, C, T, H, W); patch (pt, ph, pw); token grid (t, h, w) = (T/pt, H/ph, W/pw); L = t*h*w;
D width; nh heads; hd = D/nh; text (B, S, Dt) with mask (B, S) bool.

Any duration, resolution and aspect ratio is just another token grid: positions enter only through 3D RoPE,
so one model serves every bucket. With `cfg.conditioning`, the input also carries a mask channel and the clean
latents of conditioning frames (image-to-video, extension, loops, keyframes; issue 3): the network sees
[x_t, mask, mask * clean] and learns to continue the given frames.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from cinegen.config import DiTConfig
from cinegen.models.layers import RMSNorm, apply_rope, attention, rope_3d, timestep_embedding


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (B, L, D), shift/scale (B, D)."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])                # one fused multiply-add


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = RMSNorm(dim // heads), RMSNorm(dim // heads)   # QK-norm: stable logits
        self.proj = nn.Linear(dim, dim)
        self.sp_group = None        # a process group: sequence-parallel (Ulysses) attention over local token shards

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three nh hd) -> three b nh l hd", three=3, nh=self.heads)  # (B, nh, L, hd)
        q, k = apply_rope(self.q_norm(q), cos, sin), apply_rope(self.k_norm(k), cos, sin)
        if self.sp_group is not None:
            from cinegen.parallel.sequence import ulysses_attention
            out = ulysses_attention(q, k, v, self.sp_group)                                            # (B, nh, L/P, hd)
        else:
            out = attention(q, k, v)                                                                    # (B, nh, L, hd)
        return self.proj(rearrange(out, "b nh l hd -> b l (nh hd)"))                                    # (B, L, D)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.q_norm, self.k_norm = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(x), "b l (nh hd) -> b nh l hd", nh=self.heads)                        # (B, nh, L, hd)
        k, v = rearrange(self.kv(text), "b s (two nh hd) -> two b nh s hd", two=2, nh=self.heads)  # (B, nh, S, hd)
        out = attention(self.q_norm(q), self.k_norm(k), v, mask=text_mask)                         # (B, nh, L, hd)
        return self.proj(rearrange(out, "b nh l hd -> b l (nh hd)"))                               # (B, L, D)


class DiTBlock(nn.Module):
    """adaLN-Zero block (Peebles & Xie 2023) with a cross-attention layer to the prompt between attn and MLP."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, cfg.heads)
        self.norm_cross = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c, text, text_mask, cos, sin):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)               # each (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin)
        x = x + self.cross(self.norm_cross(x), text, text_mask)
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x                                                                                    # (B, L, D)


class FinalLayer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        pt, ph, pw = cfg.patch
        self.norm = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))
        self.linear = nn.Linear(cfg.width, pt * ph * pw * cfg.latent_channels)

    def forward(self, x, c):
        shift, scale = self.ada(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))                                    # (B, L, pt*ph*pw*C)


class VideoDiT(nn.Module):
    """forward(latents_t, t, text, text_mask, cond=None) -> velocity with the shape of latents_t."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, (pt, ph, pw) = cfg.width, cfg.patch
        self.x_embed = nn.Linear(pt * ph * pw * cfg.in_channels, d)
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.text_norm = nn.LayerNorm(cfg.text_dim)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.pool_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg)
        self.sp_group = None        # set by cinegen.parallel.sequence.enable_sequence_parallel
        self.init_weights()

    def init_weights(self) -> None:
        if self.x_embed.weight.is_meta:     # built on the meta device to be loaded (models/loading.py): nothing to draw
            return

        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(_basic)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        for block in self.blocks:
            # adaLN-Zero: every residual branch starts as the identity, so deep stacks train from step one
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
            # the cross-attention branch has no gate; zero its output projection for the same reason
            nn.init.zeros_(block.cross.proj.weight)
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)    # zero velocity at init
        nn.init.zeros_(self.final.linear.bias)

    def check_latents(self, latents: torch.Tensor) -> None:
        pt, ph, pw = self.cfg.patch
        if latents.ndim != 5 or latents.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"latents must be (B, {self.cfg.latent_channels}, T, H, W), got {tuple(latents.shape)}")
        t, h, w = latents.shape[2:]
        if t % pt or h % ph or w % pw:
            raise ValueError(f"latent grid {t}x{h}x{w} is not divisible by the patch {self.cfg.patch}")

    def forward(self, latents_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """
        latents_t: (B, C, T, H, W) noisy latents; t: (B,) in [0, 1] (1 = noise);
        text: (B, S, Dt) per-token prompt embeddings; text_mask: (B, S) bool;
        cond: (B, C + 1, T, H, W) = [mask, mask * clean latents] or None (no conditioning frames).
        Returns the velocity eps - x0, (B, C, T, H, W).
        """
        self.check_latents(latents_t)
        pt, ph, pw = self.cfg.patch
        grid = (latents_t.shape[2] // pt, latents_t.shape[3] // ph, latents_t.shape[4] // pw)
        if self.cfg.conditioning:
            if cond is None:
                cond = latents_t.new_zeros(latents_t.shape[0], self.cfg.latent_channels + 1, *latents_t.shape[2:])
            latents_t = torch.cat([latents_t, cond], dim=1)                                        # (B, 2C+1, T, H, W)
        x = rearrange(latents_t, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)  # (B, L, p*Cin)
        x = self.x_embed(x)                                                                         # (B, L, D)
        c = self.t_embed(timestep_embedding(t, 256).to(x.dtype)) + self.pool_proj(_masked_mean(text, text_mask))  # (B, D)
        text_tokens = self.text_proj(self.text_norm(text))                                          # (B, S, D)
        cos, sin = rope_3d(grid, self.cfg.width // self.cfg.heads, self.cfg.rope_theta, x.device)    # (L, hd/2)
        if self.sp_group is not None:
            from cinegen.parallel.sequence import gather_tokens, shard_tokens
            x, cos, sin = shard_tokens(x, cos, sin, self.sp_group)                                  # (B, L/P, D)
        for block in self.blocks:
            x = block(x, c, text_tokens, text_mask, cos, sin)                                       # (B, L, D)
        if self.sp_group is not None:
            x = gather_tokens(x, self.sp_group)                                                     # (B, L, D)
        x = self.final(x, c)                                                                        # (B, L, p*C)
        return rearrange(x, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                         t=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw)                      # (B, C, T, H, W)


def same_interface(a: DiTConfig, b: DiTConfig) -> bool:
    """Whether two DiTs can take turns in one sampling run (a high-noise expert and its low-noise partner): the
    same latents, conditioning input and prompt-token width. Width, depth and patch may differ: each model
    patchifies for itself (a partner with a finer patch draws detail the expert's coarse tokens cannot)."""
    return (a.latent_channels, a.conditioning, a.text_dim) == (b.latent_channels, b.conditioning, b.text_dim)


def _masked_mean(text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S, Dt), (B, S) -> (B, Dt): the prompt's mean token, a cheap global summary for adaLN."""
    m = mask.to(text.dtype)[..., None]                                                              # (B, S, 1)
    return (text * m).sum(1) / m.sum(1).clamp(min=1.0)

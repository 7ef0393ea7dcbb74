"""ODE samplers with one k-diffusion-style stateless signature, and the classifier-free-guidance wrapper.

    sample_xxx(model_fn, x, ts, callback=None) -> x at ts[-1]

`model_fn(x, t)` returns the flow velocity (t a float tensor of shape (B,)); `ts` runs from noise towards data.
`callback` receives {"i", "t", "x", "denoised"} each step: progress bars, previews and server progress hook in
there without touching sampler code.
"""

from __future__ import annotations

import torch


def _t(x: torch.Tensor, t) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)


def _denoised(x, t, v):
    """x0 estimate from the velocity: x0 = x_t - t * v."""
    return x - float(t) * v


@torch.no_grad()
def sample_euler(model_fn, x: torch.Tensor, ts: torch.Tensor, callback=None) -> torch.Tensor:
    """First-order Euler steps of dx/dt = v (minRF, diffusers FlowMatchEulerDiscreteScheduler)."""
    for i in range(len(ts) - 1):
        v = model_fn(x, _t(x, ts[i]))
        if callback is not None:
            callback({"i": i, "t": float(ts[i]), "x": x, "denoised": _denoised(x, ts[i], v)})
        x = x + (ts[i + 1] - ts[i]) * v
    return x


@torch.no_grad()
def sample_heun(model_fn, x: torch.Tensor, ts: torch.Tensor, callback=None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1); last step to t=0 is plain Euler."""
    for i in range(len(ts) - 1):
        dt = ts[i + 1] - ts[i]
        v = model_fn(x, _t(x, ts[i]))
        if callback is not None:
            callback({"i": i, "t": float(ts[i]), "x": x, "denoised": _denoised(x, ts[i], v)})
        x_next = x + dt * v
        if float(ts[i + 1]) > 0:
            v_next = model_fn(x_next, _t(x, ts[i + 1]))
            x_next = x + dt * 0.5 * (v + v_next)
        x = x_next
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def cfg_model_fn(velocity_fn, scale: float):
    """Classifier-free guidance: v = v_neg + scale * (v_pos - v_neg), both from one batched call.

    velocity_fn(x2, t2) is called with the batch doubled ([positive; negative] prompts are the caller's
    business: it knows which text goes with which half). scale == 1 skips the negative half entirely.
    """
    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return velocity_fn(x, t, guided=False)
        v_pos, v_neg = velocity_fn(torch.cat([x, x]), torch.cat([t, t]), guided=True).chunk(2)
        return v_neg + scale * (v_pos - v_neg)
    return model_fn

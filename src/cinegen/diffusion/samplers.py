"""ODE samplers with one k-diffusion-style stateless signature, and the classifier-free-guidance wrapper.

    sample_xxx(model_fn, x, ts, callback=None) -> x at ts[-1]

`model_fn(x, t)` returns the flow velocity (t a float tensor of shape (B,)); `ts` runs from noise towards data.
`callback` receives {"i", "t", "x", "denoised"} each step: progress bars, previews and server progress hook in
there without touching sampler code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


@torch.no_grad()
def sample_dpmpp_2m(model_fn, x: torch.Tensor, ts: torch.Tensor, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022; k-diffusion's sample_dpmpp_2m) for the flow path x_t = (1-t) x0 + t eps:
    alpha = 1 - t, sigma = t, lambda = log(alpha / sigma). Multistep: one model call per step, second order from
    the previous step's x0 estimate. The last step (t = 0, lambda = inf) lands on the x0 estimate."""
    old, h_last = None, None          # the previous step's x0 estimate and step size (set together)
    for i in range(len(ts) - 1):
        t, t_next = float(ts[i]), float(ts[i + 1])
        v = model_fn(x, _t(x, t))
        d = _denoised(x, t, v)                                                     # x0 estimate
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": d})
        if t_next <= 0:
            x = d
            break
        lam, lam_next = _lambda(t), _lambda(t_next)
        h = lam_next - lam
        if old is not None:
            r = h_last / h
            d_mix = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
        else:
            d_mix = d
        x = (t_next / t) * x - (1 - t_next) * math.expm1(-h) * d_mix
        old, h_last = d, h
    return x


def _lambda(t: float) -> float:
    t = min(max(t, 1e-6), 1 - 1e-6)        # t = 1 is pure noise: alpha = 0, lambda = -inf
    return math.log((1 - t) / t)


@dataclass(frozen=True)
class Solver:
    """A sampler and what a run of it costs: estimates and progress read the cost here, not from the name."""
    sample: Callable
    calls_per_step: int = 1          # model calls per step
    final_step_calls: int = 1        # model calls of the last step (Heun's last step to t = 0 is plain Euler)

    def model_calls(self, steps: int) -> int:
        """Model calls (each one guided DiT pass) of a `steps`-step run ending at t = 0."""
        return self.calls_per_step * (steps - 1) + self.final_step_calls if steps > 0 else 0


SAMPLERS = {"euler": Solver(sample_euler), "heun": Solver(sample_heun, 2), "dpmpp_2m": Solver(sample_dpmpp_2m)}


def get_solver(name: str) -> Solver:
    if name not in SAMPLERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def get_sampler(name: str):
    return get_solver(name).sample


def step_cache(model_fn, threshold: float):
    """TeaCache-style skipping (Liu et al. 2024): reuse the last velocity while the input has barely changed.

    The accumulated relative L1 change of x since the last real call is the cue (TeaCache uses the modulated
    timestep input; x's change plays the same role for an ODE step). Returns (wrapped_fn, stats) with
    stats = {"calls", "skipped"}. threshold 0 never skips.
    """
    state = {"x": None, "v": None, "acc": 0.0}
    stats = {"calls": 0, "skipped": 0}

    def cached(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if state["x"] is not None and threshold > 0:
            state["acc"] += float((x - state["x"]).abs().mean() / state["x"].abs().mean().clamp(min=1e-8))
            if state["acc"] < threshold:
                stats["skipped"] += 1
                state["x"] = x
                return state["v"]
        state["acc"] = 0.0
        state["x"], state["v"] = x, model_fn(x, t)
        stats["calls"] += 1
        return state["v"]
    return cached, stats


def cfg_model_fn(velocity_fn, scale):
    """Classifier-free guidance: v = v_neg + scale * (v_pos - v_neg), both from one batched call.

    velocity_fn(x2, t2) is called with the batch doubled ([positive; negative] prompts are the caller's
    business: it knows which text goes with which half). scale == 1 skips the negative half entirely.
    scale: a number, or a function of t (B,) giving one (a scale per expert, per noise level).
    """
    scale_at = scale if callable(scale) else (lambda t: scale)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = float(scale_at(t))
        if s == 1.0:
            return velocity_fn(x, t, guided=False)
        v_pos, v_neg = velocity_fn(torch.cat([x, x]), torch.cat([t, t]), guided=True).chunk(2)
        return v_neg + s * (v_pos - v_neg)
    return model_fn

import pytest
import torch

from cinegen.config import FlowConfig
from cinegen.diffusion.flow import flow_loss, interpolate, sample_t, shift_for, shift_t, velocity_target
from cinegen.diffusion.samplers import cfg_model_fn, get_sampler, sample_dpmpp_2m, sample_euler, sample_heun, step_cache
from cinegen.diffusion.schedules import linear_ts, shifted_ts, truncated_ts


def test_interpolation_endpoints():
    x0, eps = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(interpolate(x0, eps, torch.zeros(3)), x0)
    assert torch.equal(interpolate(x0, eps, torch.ones(3)), eps)
    assert torch.equal(velocity_target(x0, eps), eps - x0)


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun, sample_dpmpp_2m])
def test_exact_velocity_recovers_x0(sampler):
    """On a straight path the velocity eps - x0 is constant, so any step count lands exactly on x0."""
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    out = sampler(lambda x, t: eps - x0, eps.clone(), shifted_ts(7, 2.5))
    torch.testing.assert_close(out, x0, rtol=1e-5, atol=1e-5)


def test_heun_is_more_accurate_than_euler_on_a_curved_field():
    # dx/dt = x has solution x(0) = x(1) * e^-1; second order beats first order at equal steps
    ts, x1 = linear_ts(8), torch.ones(1)
    exact = torch.exp(torch.tensor(-1.0))
    e_euler = (sample_euler(lambda x, t: x, x1.clone(), ts) - exact).abs()
    e_heun = (sample_heun(lambda x, t: x, x1.clone(), ts) - exact).abs()
    assert e_heun < e_euler / 5


def _gaussian_velocity(s: float):
    """Exact flow velocity when x0 ~ N(0, s^2): E[eps - x0 | x_t] = (t - (1-t) s^2) / ((1-t)^2 s^2 + t^2) x_t."""
    def v(x, t):
        t = t.view(-1, *[1] * (x.ndim - 1))
        return (t - (1 - t) * s ** 2) / ((1 - t) ** 2 * s ** 2 + t ** 2) * x
    return v


def test_dpmpp_2m_beats_euler_at_few_steps():
    # the exact ODE carries noise z to s * z; at 10 steps the multistep solver is far closer than Euler
    s, z = 0.5, torch.randn(4, 8)
    ts = shifted_ts(10, 1.0)
    err = {f.__name__: (f(_gaussian_velocity(s), z.clone(), ts) - s * z).abs().max() for f in (sample_euler, sample_dpmpp_2m)}
    assert err["sample_dpmpp_2m"] < err["sample_euler"] / 5, err


def test_step_cache_skips_calls_and_is_exact_at_zero_threshold():
    torch.manual_seed(0)
    s, z, ts = 0.5, torch.randn(4, 8), shifted_ts(20, 1.0)
    plain = sample_euler(_gaussian_velocity(s), z.clone(), ts)
    fn, stats = step_cache(_gaussian_velocity(s), 0.0)
    torch.testing.assert_close(sample_euler(fn, z.clone(), ts), plain)
    assert stats == {"calls": 20, "skipped": 0}
    skipped = []
    for threshold in (0.02, 0.1):
        fn, stats = step_cache(_gaussian_velocity(s), threshold)
        sample_euler(fn, z.clone(), ts)
        assert stats["calls"] + stats["skipped"] == 20
        skipped.append(stats["skipped"])
    assert 0 < skipped[0] < skipped[1]          # a higher threshold skips more calls
    fn, _ = step_cache(_gaussian_velocity(s), 0.02)
    # a light cache costs accuracy, but boundedly
    assert (sample_euler(fn, z.clone(), ts) - s * z).abs().max() < 3 * (plain - s * z).abs().max()


def test_callback_sees_every_step():
    seen = []
    sample_euler(lambda x, t: torch.zeros_like(x), torch.zeros(1, 2), linear_ts(5), callback=lambda d: seen.append(d["i"]))
    assert seen == [0, 1, 2, 3, 4]


def test_shift_grows_with_tokens_and_maps_endpoints():
    cfg = FlowConfig()
    assert shift_for(64, cfg) == 1.0 and shift_for(4096, cfg) > shift_for(1024, cfg) > 1.0
    assert shift_for(10 ** 9, cfg) == cfg.max_shift
    t = torch.tensor([0.0, 0.5, 1.0])
    out = shift_t(t, 3.0)
    assert out[0] == 0 and out[2] == 1 and out[1] == pytest.approx(0.75)


def test_logit_normal_times_are_inside_the_unit_interval():
    t = sample_t(10000, 256, FlowConfig(), generator=torch.Generator().manual_seed(0))
    assert (t > 0).all() and (t < 1).all()
    assert abs(t.mean().item() - 0.5) < 0.02
    t_big = sample_t(10000, 4096, FlowConfig(), generator=torch.Generator().manual_seed(0))
    assert t_big.mean() > t.mean() + 0.1                  # bigger grids train nearer noise


def test_an_expert_trains_only_inside_its_t_range():
    cfg = FlowConfig(base_shift=3, base_tokens=80, t_min=0.8)
    t = sample_t(10000, 80, cfg, generator=torch.Generator().manual_seed(0))
    assert (t >= 0.8).all() and (t < 1).all() and t.std() > 0.03        # spread over the range, not a point
    whole = sample_t(10000, 80, FlowConfig(base_shift=3, base_tokens=80), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(t, 0.8 + 0.2 * whole)                            # the same draw, mapped into the range
    for bad in ({"t_min": 0.9, "t_max": 0.5}, {"t_min": -0.1}, {"t_max": 1.5}):
        with pytest.raises(ValueError, match="0 <= t_min < t_max <= 1"):
            sample_t(4, 80, FlowConfig(**bad))


def test_flow_loss_is_zero_for_the_exact_velocity_and_respects_the_mask():
    x0, eps = torch.randn(2, 1, 3, 2, 2), torch.randn(2, 1, 3, 2, 2)
    t = torch.rand(2)
    assert torch.allclose(flow_loss(lambda x, tt: eps - x0, x0, t, eps), torch.zeros(2))
    mask = torch.zeros(2, 1, 3, 1, 1)
    mask[:, :, 1:] = 1
    wrong_first = lambda x, tt: torch.cat([torch.zeros_like(x0[:, :, :1]), (eps - x0)[:, :, 1:]], dim=2)  # noqa: E731
    assert torch.allclose(flow_loss(wrong_first, x0, t, eps, loss_mask=mask), torch.zeros(2))
    assert (flow_loss(wrong_first, x0, t, eps) > 0).all()


def test_cfg_combines_positive_and_negative():
    def velocity(x, t, guided):
        if not guided:
            return torch.full_like(x, 2.0)
        return torch.cat([torch.full_like(x[:1], 2.0), torch.full_like(x[:1], 1.0)])
    x, t = torch.zeros(1, 3), torch.zeros(1)
    assert torch.allclose(cfg_model_fn(velocity, 3.0)(x, t), torch.full((1, 3), 1.0 + 3.0 * (2.0 - 1.0)))
    assert torch.allclose(cfg_model_fn(velocity, 1.0)(x, t), torch.full((1, 3), 2.0))
    per_t = cfg_model_fn(velocity, lambda t: 3.0 if float(t[0]) >= 0.5 else 1.0)    # a scale per noise level
    assert torch.allclose(per_t(x, torch.ones(1)), torch.full((1, 3), 4.0))
    assert torch.allclose(per_t(x, t), torch.full((1, 3), 2.0))


def test_schedules_and_bad_values():
    ts = linear_ts(4)
    assert ts[0] == 1 and ts[-1] == 0 and len(ts) == 5
    tail = truncated_ts(ts, 0.6)
    assert tail[0] == pytest.approx(0.6) and tail[-1] == 0
    assert len(truncated_ts(ts, 0.0)) == 1
    with pytest.raises(ValueError, match="strength"):
        truncated_ts(ts, 1.5)
    with pytest.raises(ValueError, match="steps"):
        linear_ts(0)
    with pytest.raises(ValueError, match="solver"):
        get_sampler("rk45")


def test_every_solver_name_the_cli_offers_has_a_solver():
    from cinegen import defaults
    from cinegen.diffusion.samplers import SAMPLERS
    assert tuple(SAMPLERS) == defaults.SOLVERS and defaults.SOLVER in SAMPLERS

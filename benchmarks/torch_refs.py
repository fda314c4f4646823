"""PyTorch references of wearjax's heart-rate and VO2 models, for `benchmarks/torch_vs_jax.py`.

Each reference is the same model as its wearjax counterpart, written the way PyTorch research
code writes such models: eager, batch-first `[B, T, ...]`, the parts that do not depend on the
recursive state computed for the whole session first (an `nn.GRU` over the sequence, the heads
on every second; the published code's `initialize_batch`), then a Python `for` loop over
seconds that calls the per-step modules, or `torchdiffeq.odeint` calling the ODE function
`nn.Module` at every RK4 stage (as `apple/ml-heart-rate-models`, the personalised ODE's code,
does):

- `HRKalmanRef`: `wearjax.models.hr_kalman.HRKalman` (encoder, GRU, window and step heads,
  learned transition and gain), its generative rollout: a loop over windows and, inside each,
  over seconds calling `Transition` and `Gain`;
- `HRODERef`: `wearjax.models.hr_ode.HRODE`, its generative rollout: one `odeint` per 60 s
  window of `RelaxField` (dg/dt = rate (d - g) / 60), each window starting where the last ended;
- `PersonalODERef`: `wearjax.models.hr_personalized.PersonalHRODE` (asymmetric form), one
  `odeint` of `PersonalField` over the whole session;
- `VO2Ref`: `wearjax.models.vo2.VO2Kalman`, a bidirectional `nn.GRU` and the dual-pathway
  filter in a loop over seconds.

The ODE inputs are linear between seconds, as in `wearjax.models.ode`. `odeint` is called with
`method=ODE_METHOD`, `"rk4_classic"`: the classical RK4 that wearjax integrates with, registered
here because torchdiffeq's own `"rk4"` is Kutta's 3/8 rule (`rk4_alt_step_func`), a different
fourth-order method at the same cost (four evaluations of the field per step). Set
`ODE_METHOD = "rk4"` for torchdiffeq's.

`from_wearjax(model)` builds the reference of an Equinox model with its weights copied in;
`tests/test_torch_refs.py` checks that the two agree. torch and torchdiffeq are benchmark-only
dependencies (`pip install -e .[bench]`); wearjax never imports them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchdiffeq import odeint
from torchdiffeq._impl.odeint import SOLVERS  # torchdiffeq's table of solvers by name
from torchdiffeq._impl.rk_common import rk4_step_func
from torchdiffeq._impl.solvers import FixedGridODESolver

from wearjax.models import hr_kalman as K
from wearjax.models import hr_ode as O
from wearjax.models import hr_personalized as P
from wearjax.models import vo2 as V


class ClassicalRK4(FixedGridODESolver):
    """The classical RK4 step (torchdiffeq's `rk4_step_func`) on a fixed grid."""

    order = 4

    def _step_func(self, func, t0, dt, t1, y0):
        f0 = func(t0, y0)
        return rk4_step_func(func, t0, dt, t1, y0, f0=f0), f0


SOLVERS.setdefault("rk4_classic", ClassicalRK4)
ODE_METHOD = "rk4_classic"


def _interp(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`u [B, n]` (one column per second) at time `t`, linear between seconds."""
    n = u.shape[1]
    i = min(max(int(t), 0), n - 2)
    frac = t - i
    return u[:, i] + frac * (u[:, i + 1] - u[:, i])


class Encoder(nn.Module):
    """Linear -> LeakyReLU -> Dropout, twice (`backbone.Encoder`)."""

    def __init__(self, in_size: int, hidden: int, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        sizes = [in_size] + [hidden] * depth
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.dropout(F.leaky_relu(layer(x)))
        return x


class Backbone(nn.Module):
    """Encoder + stacked GRU over the session (`backbone.Backbone`): `[B, T, F] -> [B, T, H]`."""

    def __init__(self, n_features: int, hidden: int, n_layers: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = Encoder(n_features, hidden, dropout=dropout)
        self.gru = nn.GRU(hidden, hidden, n_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.encoder(x))[0]


# -- HR neural Kalman model ------------------------------------------------------------------
class Transition(nn.Module):
    """f_tr: constant-velocity prior plus a learned correction (`hr_kalman_nets.Transition`)."""

    def __init__(self, hidden: int, width: int = 32):
        super().__init__()
        self.context = nn.Linear(hidden, width)
        self.state = nn.Linear(2, width, bias=False)
        self.out = nn.Linear(width, 2)

    def forward(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(context + self.state(z))
        prior = torch.stack([z[:, 0] + z[:, 1], z[:, 1]], dim=-1)
        return prior + self.out(a)


class Gain(nn.Module):
    """f_gain: the scalar Kalman gain's logit plus a learned correction (`Gain`)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.hidden = nn.Linear(3, width)
        self.out = nn.Linear(width, 1)

    def forward(self, var_pred: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        u = torch.log(torch.cat([var_pred, r[:, None]], dim=-1))
        return torch.sigmoid(u[:, 0] - u[:, 2] + self.out(torch.tanh(self.hidden(u)))[:, 0])


class HRKalmanRef(nn.Module):
    """`HRKalman`'s generative rollout: `rollout(x [B, T, F], hr0 [B]) -> (hr, var) [B, T]`."""

    def __init__(self, n_features: int, hidden: int = 128, n_layers: int = 2, window: int = 60):
        super().__init__()
        self.backbone = Backbone(n_features, hidden, n_layers)
        self.window_head = nn.Linear(hidden, 5)
        self.step_head = nn.Linear(hidden, 4)
        self.transition = Transition(hidden)
        self.gain = Gain()
        self.carry_noise = nn.Parameter(torch.zeros(()))
        self.log_anchor_time = nn.Parameter(torch.zeros(()))
        self.window = window

    def rollout(self, x: torch.Tensor, hr0: torch.Tensor):
        b, t, _ = x.shape
        s = self.backbone(x)
        raw = self.step_head(s)
        a = K.OBS_CENTER + K.OBS_SCALE * raw[..., 0]
        q = F.softplus(raw[..., 1:3] + K.Q_SHIFT) + 1e-5
        r = F.softplus(raw[..., 3] + K.R_SHIFT) + 1e-5
        ctx = self.transition.context(s)
        # the observation target, anchored at the session's first (known) second
        seconds = torch.arange(t, dtype=x.dtype)
        fade = torch.exp(-seconds / torch.exp(self.log_anchor_time))
        target = a + fade * (hr0 - a[:, 0])[:, None]
        w = torch.tensor([1.0, K.VELOCITY_WEIGHT], dtype=x.dtype)
        h, v, carried = hr0, torch.zeros_like(hr0), False
        hrs, variances = [], []
        for start in range(0, t, self.window):
            head = self.window_head(s[:, start])
            mu = h + K.MEAN_SCALE * head[:, 0]
            sigma = 0.5 + K.SD_SCALE * F.softplus(head[:, 1])
            p = F.softplus(head[:, 3:5] + K.P0_SHIFT) + 1e-4
            inflation = F.softplus(self.carry_noise) if carried else 0.0
            p = p + torch.stack([v / sigma**2 + inflation, torch.zeros_like(v)], dim=-1)
            upper = torch.stack([(K.HR_MAX - mu) / sigma, K.MAX_RATE / sigma], dim=-1)
            lower = torch.stack([(K.HR_MIN - mu) / sigma, -K.MAX_RATE / sigma], dim=-1)
            z = torch.clamp(torch.stack([(h - mu) / sigma, head[:, 2]], dim=-1), lower, upper)
            y = (target[:, start : start + self.window] - mu[:, None]) / sigma[:, None]
            gs, ps = [z[:, 0]], [p[:, 0]]
            for i in range(start + 1, start + self.window):
                z_pred = self.transition(z, ctx[:, i])
                p_pred = p + q[:, i]
                k = self.gain(p_pred, r[:, i])
                nu = y[:, i - start] - z_pred[:, 0]
                z = torch.clamp(z_pred + w * (k * nu)[:, None], lower, upper)
                p = p_pred * (1.0 - w * k[:, None])
                gs.append(z[:, 0])
                ps.append(p[:, 0])
            hr = mu[:, None] + sigma[:, None] * torch.stack(gs, dim=1)
            var = sigma[:, None] ** 2 * torch.stack(ps, dim=1)
            hrs.append(hr)
            variances.append(var)
            h, v, carried = hr[:, -1], var[:, -1], True
        return torch.cat(hrs, dim=1), torch.cat(variances, dim=1)


# -- HR neural ODE ---------------------------------------------------------------------------
class Demand(nn.Module):
    """d(s_t): a two-layer MLP (`hr_ode.Demand`)."""

    def __init__(self, in_size: int, width: int = 32):
        super().__init__()
        self.hidden = nn.Linear(in_size, width)
        self.out = nn.Linear(width, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.out(F.leaky_relu(self.hidden(s)))[..., 0]


class RelaxField(nn.Module):
    """dg/dt = rate (d - g) / 60 per second, with `d` and `rate` `[B, W + 1]` set per window
    (`set_inputs`) and linear between seconds."""

    def set_inputs(self, demand: torch.Tensor, rate: torch.Tensor) -> None:
        self.demand, self.rate = demand, rate

    def forward(self, t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return _interp(self.rate, t) * (_interp(self.demand, t) - g) / O.TIME_UNIT


def _with_next_first(v: torch.Tensor, window: int) -> torch.Tensor:
    """`[B, T] -> [B, N, W + 1]`: each window with the next one's first second (the last
    window repeats its last)."""
    v = v.reshape(v.shape[0], -1, window)
    after = torch.cat([v[:, 1:, :1], v[:, -1:, -1:]], dim=1)
    return torch.cat([v, after], dim=2)


class HRODERef(nn.Module):
    """`HRODE`'s generative rollout: `rollout(x [B, T, F], hr0 [B]) -> hr [B, T]`."""

    def __init__(self, n_features: int, hidden: int = 128, n_layers: int = 2, window: int = 60):
        super().__init__()
        self.backbone = Backbone(n_features, hidden, n_layers)
        self.window_head = nn.Linear(hidden, 1)
        self.level = nn.Linear(hidden, 1)
        self.demand = Demand(hidden)
        self.rate = nn.Linear(hidden, 1)
        self.log_anchor_time = nn.Parameter(torch.zeros(()))
        self.field = RelaxField()
        self.window = window

    def rollout(self, x: torch.Tensor, hr0: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        w = self.window
        s = self.backbone(x)
        d = _with_next_first(self.demand(s), w)
        level = _with_next_first(K.OBS_CENTER + K.OBS_SCALE * self.level(s)[..., 0], w)
        rate = _with_next_first(torch.exp(O.RATE_RANGE * torch.tanh(self.rate(s)[..., 0])), w)
        n = t // w
        since = (w * torch.arange(n)[:, None] + torch.arange(w + 1)[None, :]).to(x.dtype)
        offset = (hr0 - level[:, 0, 0])[:, None, None]
        target = level + torch.exp(-since / torch.exp(self.log_anchor_time)) * offset
        mu = target[:, :, 0]
        sigma = 0.5 + K.SD_SCALE * F.softplus(self.window_head(s[:, ::w])[..., 0])
        demand = d + (target - mu[..., None]) / sigma[..., None]
        times = torch.arange(w + 1, dtype=x.dtype)
        h, hrs = hr0, []
        for i in range(n):
            self.field.set_inputs(demand[:, i], rate[:, i])
            g0 = (torch.clamp(h, K.HR_MIN, K.HR_MAX) - mu[:, i]) / sigma[:, i]
            g = odeint(self.field, g0, times, method=ODE_METHOD, options=dict(step_size=1.0))
            hr = torch.clamp(mu[:, i] + sigma[:, i] * g, K.HR_MIN, K.HR_MAX)  # [W + 1, B]
            hrs.append(hr[:-1].T)
            h = hr[-1]
        return torch.cat(hrs, dim=1)


# -- personalised HR ODE ---------------------------------------------------------------------
class PersonalField(nn.Module):
    """d(HR, D)/dt of the asymmetric personalised ODE (`hr_personalized.asymmetric_hr_field`),
    the intensity `[B, T]` and the runners' parameters set per batch (`set_inputs`)."""

    def set_inputs(self, intensity: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        self.intensity, self.params = intensity, params

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        hr, demand = y[:, 0], y[:, 1]
        f_min = (torch.clamp(hr - p["hr_min"], min=P._FLOOR) / 60.0) ** p["alpha"]
        f_max = (torch.clamp(p["hr_max"] - hr, min=P._FLOOR) / 60.0) ** p["beta"]
        shape = torch.where(demand < hr, p["recovery"], f_min * f_max)
        rate = torch.clamp(torch.exp(p["log_rate_hr"]) * shape / 60.0, max=P.MAX_RATE)
        restore = P.RESTORE_RATE * (F.relu(p["hr_min"] - hr) - F.relu(hr - p["hr_max"]))
        d_hr = rate * (demand - hr) + restore
        rate_demand = torch.clamp(torch.exp(p["log_rate_demand"]) / 60.0, max=P.MAX_RATE)
        d_demand = rate_demand * (_interp(self.intensity, t) - demand)
        return torch.stack([d_hr, d_demand], dim=-1)


class PersonalODERef(nn.Module):
    """`PersonalHRODE` (asymmetric): `rollout(u [B, T, 2], hr0 [B], runner [B]) -> hr [B, T]`,
    one `odeint` of the whole session from (HR, D) = (hr0, hr0)."""

    def __init__(self, n_runners: int, embed: int = 8, width: int = 32):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(n_runners, embed))
        self.decoder = nn.Linear(embed, len(P.BOUNDS))
        self.activity_hidden = nn.Linear(2 + embed, width)
        self.activity_out = nn.Linear(width, 1)
        self.field = PersonalField()

    def rollout(self, u: torch.Tensor, hr0: torch.Tensor, runner: torch.Tensor) -> torch.Tensor:
        b, t, _ = u.shape
        e = self.embedding[runner]
        raw = self.decoder(e)
        params = {
            name: lo + (hi - lo) * torch.sigmoid(raw[:, i])
            for i, (name, (lo, hi)) in enumerate(P.BOUNDS.items())
        }
        scaled = torch.stack(
            [(u[..., 0] - P.SPEED_CENTER) / P.SPEED_SCALE, u[..., 1] / P.GRADE_SCALE], dim=-1
        )
        z = torch.cat([scaled, e[:, None].expand(b, t, e.shape[1])], dim=-1)
        a = self.activity_out(F.leaky_relu(self.activity_hidden(z)))[..., 0]
        lo, hi = P.DEMAND_BOUNDS
        hours = torch.arange(t, dtype=u.dtype) / 3600.0
        intensity = (lo + (hi - lo) * torch.sigmoid(a)) * (1.0 + params["fatigue"][:, None] * hours)
        self.field.set_inputs(intensity, params)
        y0 = torch.stack([hr0, hr0], dim=-1)
        times = torch.arange(t, dtype=u.dtype)
        ys = odeint(self.field, y0, times, method=ODE_METHOD, options=dict(step_size=1.0))
        return torch.clamp(ys[..., 0].T, K.HR_MIN, K.HR_MAX)


# -- VO2 dual-pathway Kalman model -----------------------------------------------------------
class VO2Ref(nn.Module):
    """`VO2Kalman`: `rollout(x [B, T, F], v0 [B]) -> (vo2 [B, T], (mu, sigma, delta95) [B, N])`
    in mL/min, the filter a loop over seconds."""

    def __init__(self, n_features: int, hidden: int = 256, n_layers: int = 2, window: int = 60):
        super().__init__()
        self.encoder = Encoder(n_features + 1, hidden)
        self.gru = nn.GRU(hidden, hidden, n_layers, batch_first=True, bidirectional=True)
        self.step_head = nn.Linear(2 * hidden, V.N_STEP_HEADS)
        self.window_head = nn.Linear(2 * hidden, 3)
        self.log_p0 = nn.Parameter(torch.zeros(()))
        self.window = window

    def rollout(self, x: torch.Tensor, v0: torch.Tensor):
        b, t, _ = x.shape
        u0 = v0 / V.VO2_UNIT
        s = self.gru(self.encoder(torch.cat([x, (u0 - 1.0)[:, None, None].expand(b, t, 1)], -1)))[0]
        raw = self.step_head(s)
        obs, direct = u0[:, None] + raw[..., 0], u0[:, None] + raw[..., 7]
        q = F.softplus(raw[..., 1] + V.Q_SHIFT) + 1e-6
        r = F.softplus(raw[..., 2] + V.R_SHIFT) + 1e-6
        lo = -V.RATE_UNIT * F.softplus(raw[..., 4])
        hi = V.RATE_UNIT * F.softplus(raw[..., 5])
        trend = torch.sigmoid(raw[..., 6] - 2.0)
        alpha = torch.sigmoid(raw[..., 8])
        v1, v2, var = u0, u0, F.softplus(self.log_p0).expand(b)
        vs = [v0]
        for i in range(1, t):
            prior = v1 + trend[:, i] * (v1 - v2)
            var_pred = var + q[:, i]
            k = torch.sigmoid(torch.log(var_pred) - torch.log(r[:, i]) + raw[:, i, 3])
            v_kf = prior + torch.clamp(k * (obs[:, i] - prior), lo[:, i], hi[:, i])
            var = (1.0 - k) * var_pred
            v1, v2 = alpha[:, i] * direct[:, i] + (1.0 - alpha[:, i]) * v_kf, v1
            vs.append(V.VO2_UNIT * v1)
        mean = s.reshape(b, t // self.window, self.window, -1).mean(dim=2)
        head = self.window_head(mean)
        mu = v0[:, None] + V.VO2_UNIT * head[..., 0]
        sigma = 0.1 * V.VO2_UNIT * F.softplus(head[..., 1])
        delta95 = 0.05 * V.VO2_UNIT * F.softplus(head[..., 2])
        return torch.stack(vs, dim=1), (mu, sigma, delta95)


# -- weights from the Equinox models ---------------------------------------------------------
def _set(param: torch.Tensor, value) -> None:
    value = torch.from_numpy(np.array(value))  # copy_ casts to the parameter's dtype
    if param.shape != value.shape:
        raise ValueError(f"shape {tuple(value.shape)} does not fit {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value)


def _linear(dst: nn.Linear, src) -> None:
    _set(dst.weight, src.weight)
    if dst.bias is not None:
        _set(dst.bias, src.bias)


def _gru_layer(gru: nn.GRU, index: int, layer, suffix: str = "") -> None:
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        _set(getattr(gru, f"{name}_l{index}{suffix}"), getattr(layer, name))


def _encoder(dst: Encoder, src) -> None:
    for d, s in zip(dst.layers, src.layers, strict=True):
        _linear(d, s)


def _backbone(dst: Backbone, src) -> None:
    _encoder(dst.encoder, src.encoder)
    for i, layer in enumerate(src.gru.layers):
        _gru_layer(dst.gru, i, layer)


def _sizes(backbone) -> tuple[int, int, int]:
    """(features, hidden, layers) of a wearjax `Backbone`."""
    first = backbone.encoder.layers[0].weight
    return first.shape[1], backbone.hidden, len(backbone.gru.layers)


def kalman_from_wearjax(model: K.HRKalman, dtype=torch.float32) -> HRKalmanRef:
    ref = HRKalmanRef(*_sizes(model.backbone), window=model.window).to(dtype)
    _backbone(ref.backbone, model.backbone)
    _linear(ref.window_head, model.window_head)
    _linear(ref.step_head, model.step_head)
    for name in ("context", "state", "out"):
        _linear(getattr(ref.transition, name), getattr(model.transition, name))
    _linear(ref.gain.hidden, model.gain.hidden)
    _linear(ref.gain.out, model.gain.out)
    _set(ref.carry_noise, model.carry_noise)
    _set(ref.log_anchor_time, model.log_anchor_time)
    return ref


def ode_from_wearjax(model: O.HRODE, dtype=torch.float32) -> HRODERef:
    if not model.learned_rate:
        raise ValueError("the reference has the learned rate only")
    ref = HRODERef(*_sizes(model.backbone), window=model.window).to(dtype)
    _backbone(ref.backbone, model.backbone)
    for name in ("window_head", "level", "rate"):
        _linear(getattr(ref, name), getattr(model, name))
    _linear(ref.demand.hidden, model.demand.hidden)
    _linear(ref.demand.out, model.demand.out)
    _set(ref.log_anchor_time, model.log_anchor_time)
    return ref


def personal_from_wearjax(model: P.PersonalHRODE, dtype=torch.float32) -> PersonalODERef:
    if not model.asymmetric:
        raise ValueError("the reference is the asymmetric form")
    n, embed = model.embedding.shape
    ref = PersonalODERef(n, embed, model.activity_hidden.weight.shape[0]).to(dtype)
    _set(ref.embedding, model.embedding)
    for name in ("decoder", "activity_hidden", "activity_out"):
        _linear(getattr(ref, name), getattr(model, name))
    return ref


def vo2_from_wearjax(model: V.VO2Kalman, dtype=torch.float32) -> VO2Ref:
    n_features = model.encoder.layers[0].weight.shape[1] - 1
    hidden, layers = model.gru.forward[0].hidden, len(model.gru.forward)
    ref = VO2Ref(n_features, hidden, layers, window=model.window).to(dtype)
    _encoder(ref.encoder, model.encoder)
    for i, (fwd, bwd) in enumerate(zip(model.gru.forward, model.gru.backward, strict=True)):
        _gru_layer(ref.gru, i, fwd)
        _gru_layer(ref.gru, i, bwd, "_reverse")
    _linear(ref.step_head, model.step_head)
    _linear(ref.window_head, model.window_head)
    _set(ref.log_p0, model.log_p0)
    return ref


def from_wearjax(model, dtype=torch.float32) -> nn.Module:
    """The reference of a wearjax model, with its weights, in `dtype` and eval mode (no
    dropout)."""
    for cls, build in (
        (K.HRKalman, kalman_from_wearjax),
        (O.HRODE, ode_from_wearjax),
        (P.PersonalHRODE, personal_from_wearjax),
        (V.VO2Kalman, vo2_from_wearjax),
    ):
        if isinstance(model, cls):
            return build(model, dtype).eval()
    raise TypeError(f"no PyTorch reference of {type(model).__name__}")

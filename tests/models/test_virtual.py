"""The virtual-sensing model: ELBO terms, the head's moments, the tracker against a float64
Kalman loop, and which modalities each setting reads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models.virtual import (
    ABLATIONS,
    BIN_BPM,
    FLOOR_DB,
    GRID_BPM,
    PRIOR,
    SETTINGS,
    VirtualSensing,
    compress,
    gaussian_kl,
    moments,
    reparameterise,
    soft_target,
    track,
)


def test_masked_gaussian_kl_averages_the_kept_cells(x64):
    rng = np.random.default_rng(3)
    mu, logvar = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 2))
    w = rng.random((4, 6)) > 0.5
    kept = gaussian_kl(jnp.asarray(mu[w]), jnp.asarray(logvar[w]))
    got = gaussian_kl(jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(w))
    np.testing.assert_allclose(float(got), float(kept), rtol=1e-12)


def test_gaussian_kl_equals_the_closed_form_by_hand(x64):
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(5, 7, 4)), rng.normal(size=(5, 7, 4))
    expected = 0.0
    for i in range(5):
        for j in range(7):
            # KL(N(m, s2) || N(0, 1)) = 0.5 (s2 + m^2 - 1 - log s2), summed over dimensions
            s2 = np.exp(logvar[i, j])
            expected += 0.5 * np.sum(s2 + mu[i, j] ** 2 - 1.0 - np.log(s2))
    expected /= 35
    got = gaussian_kl(jnp.asarray(mu), jnp.asarray(logvar))
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)


def test_reparameterise_draws_from_the_posterior():
    mu = jnp.full((20000, 1), 2.0)
    logvar = jnp.full((20000, 1), np.log(0.25))
    z = np.asarray(reparameterise(mu, logvar, jax.random.key(0)))
    assert abs(z.mean() - 2.0) < 0.02 and abs(z.std() - 0.5) < 0.02
    np.testing.assert_array_equal(np.asarray(reparameterise(mu, logvar, None)), np.asarray(mu))


def test_moments_against_a_loop(x64):
    logits = np.random.default_rng(1).normal(size=(3, len(GRID_BPM)))
    mean, var = moments(jnp.asarray(logits))
    for k in range(3):
        p = np.exp(logits[k] - logits[k].max())
        p /= p.sum()
        m = sum(pi * g for pi, g in zip(p, GRID_BPM, strict=True))
        v = sum(pi * (g - m) ** 2 for pi, g in zip(p, GRID_BPM, strict=True))
        np.testing.assert_allclose(float(mean[k]), m, rtol=1e-12)
        np.testing.assert_allclose(float(var[k]), v + BIN_BPM**2 / 12, rtol=1e-12)


def test_compress_is_decibels_under_the_peak_with_a_floor():
    # peak-normalised magnitudes: 1, -20 dB, -40 dB, -60 dB (the floor), under it, none
    spec = jnp.asarray([1.0, 0.1, 0.01, 10.0 ** (-FLOOR_DB / 20.0), 1e-5, 0.0])
    got = np.asarray(compress(spec))
    db = 20.0 * np.log10(np.array([1.0, 0.1, 0.01, 10.0 ** (-FLOOR_DB / 20.0)]))
    np.testing.assert_allclose(got[:4], 1.0 + db / FLOOR_DB, atol=1e-6)
    assert got[4] == 0.0 and got[5] == 0.0  # under the floor, and a missing spectrum (padding)
    assert np.all(np.diff(got[:5]) <= 0)  # monotone: the peak keeps its place


def test_soft_target_is_a_distribution_peaking_at_the_hr():
    hr = jnp.asarray([60.0, 150.0, 201.3, 0.0, 300.0])  # 0 is the padding fill
    t = np.asarray(soft_target(hr, 2.0))
    assert np.all(np.isfinite(t))
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-5)
    for k, h in enumerate([60.0, 150.0, 201.3, 0.0, 300.0]):
        nearest = GRID_BPM[np.argmin(np.abs(GRID_BPM - h))]
        assert GRID_BPM[np.argmax(t[k])] == nearest


@pytest.mark.slow  # ~25 s on 2 cores
def test_the_refiner_is_causal_in_the_windows():
    model = VirtualSensing("fusion", width=8, latent=2, key=jax.random.key(0))
    k = jax.random.split(jax.random.key(1), 3)
    f = len(GRID_BPM)
    acc, ppg = jax.random.uniform(k[0], (10, f, 3)), jax.random.uniform(k[1], (10, f, 1))
    later = acc.at[6:].set(jax.random.uniform(k[2], (4, f, 3)))
    a, b = np.asarray(model(acc, ppg).hr), np.asarray(model(later, ppg).hr)
    np.testing.assert_allclose(a[:6], b[:6], rtol=1e-6)
    assert not np.allclose(a[6:], b[6:])


def test_tracker_equals_a_float64_kalman_loop(x64):
    rng = np.random.default_rng(2)
    n = 60
    truth = 120 + np.cumsum(rng.normal(0, 1.5, n))
    var = rng.uniform(4, 100, n)
    hr = truth + rng.normal(size=n) * np.sqrt(var)
    ok = rng.random(n) > 0.2
    ok[:2] = False  # nothing observed yet: the prior holds
    q = 2.25
    mean, pvar = track(jnp.asarray(hr), jnp.asarray(var), jnp.asarray(ok), q)
    m, p = PRIOR[0], PRIOR[1] ** 2
    for t in range(n):
        if ok[t]:
            k = p / (p + var[t])
            m, p = m + k * (hr[t] - m), (1 - k) * p
        np.testing.assert_allclose(float(mean[t]), m, rtol=1e-10)
        np.testing.assert_allclose(float(pvar[t]), p, rtol=1e-10)
        p = p + q
    assert np.abs(np.asarray(mean) - truth).mean() < np.abs(hr - truth).mean()


@pytest.mark.parametrize("setting", SETTINGS + ABLATIONS)
def test_each_setting_reads_only_its_modalities(setting):
    model = VirtualSensing(setting, width=8, latent=2, key=jax.random.key(0))
    k = jax.random.split(jax.random.key(1), 4)
    f = len(GRID_BPM)
    acc, ppg = jax.random.uniform(k[0], (6, f, 3)), jax.random.uniform(k[1], (6, f, 1))
    acc2, ppg2 = jax.random.uniform(k[2], (6, f, 3)), jax.random.uniform(k[3], (6, f, 1))
    out = model(acc, ppg)
    assert out.hr.shape == (6,) and out.logits.shape == (6, f) and out.gate.shape == (6, f)
    assert np.all(np.asarray(out.var) > 0)
    same_without_ppg = np.allclose(np.asarray(model(acc, ppg2).hr), np.asarray(out.hr))
    same_without_acc = np.allclose(np.asarray(model(acc2, ppg).hr), np.asarray(out.hr))
    assert same_without_ppg == (setting in ("acc_only", "acc_refined", "virtual"))
    assert same_without_acc == (setting == "ppg_only")
    assert (np.abs(np.asarray(out.virtual_ppg)).sum() > 0) == (setting == "virtual")


@pytest.mark.slow  # ~25 s on 2 cores
def test_any_number_of_windows():
    model = VirtualSensing("virtual", width=8, latent=2, key=jax.random.key(0))
    f = len(GRID_BPM)
    for n in (1, 33):
        out = model(jnp.zeros((n, f, 3)), jnp.zeros((n, f, 1)))
        assert out.hr.shape == (n,) and np.all(np.isfinite(np.asarray(out.hr)))


def test_inference_parameters_leave_out_what_inference_does_not_run():
    key = jax.random.key(0)
    count = lambda m: sum(  # noqa: E731
        a.size for a in jax.tree_util.tree_leaves(m) if isinstance(a, jax.Array)
    )
    width = 8
    acc_only = VirtualSensing("acc_only", width=width, latent=2, key=key)
    assert acc_only.inference_parameters() == count(acc_only) - (1 * width + width)  # ppg_in
    virtual = VirtualSensing("virtual", width=width, latent=2, key=key)
    decoders = (width + 1) + (3 * width + 3)  # to_ppg, to_acc
    assert virtual.inference_parameters() == count(virtual) - (2 * width) - decoders


@pytest.mark.parametrize("setting", ("acc_only", "acc_refined"))
def test_the_gait_prior_multiplies_the_heads_distribution(setting):
    from wearjax.models.virtual import N_GAIT

    key = jax.random.key(0)
    plain = VirtualSensing(setting, width=8, latent=2, key=key)
    model = VirtualSensing(setting, width=8, latent=2, gait=True, key=key)
    # the other parts start as in a model without the prior
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(
            _without_gait_prior(model)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    f = len(GRID_BPM)
    rng = np.random.default_rng(0)
    acc = jnp.asarray(rng.uniform(size=(5, f, 3)), jnp.float32)
    gait = jnp.asarray(150 + 20 * rng.uniform(size=(5, N_GAIT)), jnp.float32)
    out, base = model(acc, jnp.zeros((5, f, 1)), gait), plain(acc, jnp.zeros((5, f, 1)))
    # by hand: a Gaussian over the grid, mean and log-SD linear in the standardised features
    w, b = np.asarray(model.gait_prior.linear.weight), np.asarray(model.gait_prior.linear.bias)
    lin = (np.asarray(gait, np.float64) - 160.0) / 20.0 @ w.T + b
    mean, sd = 130 + 40 * lin[:, 0], 1 + 10 * np.exp(np.clip(lin[:, 1], -5, 3))
    prior = -0.5 * ((GRID_BPM[None] - mean[:, None]) / sd[:, None]) ** 2
    np.testing.assert_allclose(out.logits, np.asarray(base.logits) + prior, rtol=1e-5, atol=1e-4)
    logits = np.asarray(out.logits, np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.hr, p @ GRID_BPM, rtol=1e-5)
    with pytest.raises(ValueError, match="gait features"):
        model(acc, jnp.zeros((5, f, 1)))


def _without_gait_prior(model):
    """The model's arrays without its gait prior's."""
    import equinox as eqx

    return eqx.tree_at(lambda m: m.gait_prior, model, None, is_leaf=lambda x: x is None)


def test_ppg_only_takes_no_gait_prior():
    model = VirtualSensing("ppg_only", width=8, latent=2, gait=True, key=jax.random.key(0))
    assert model.gait_prior is None


@pytest.mark.slow  # ~13 s cold on 2 cores: slow step only (the plain gait prior is fast)
def test_the_residual_gait_prior_starts_at_the_ridge_and_never_trains_its_fit():
    import equinox as eqx

    from wearjax.models.virtual import N_GAIT, with_gait_coef

    model = VirtualSensing("acc_refined", width=8, latent=2, gait_ridge=True, key=jax.random.key(0))
    rng = np.random.default_rng(1)
    coef = np.concatenate([[40.0], rng.uniform(0.05, 0.2, N_GAIT)])
    model = with_gait_coef(model, jnp.asarray(coef, jnp.float32))
    gait = jnp.asarray(150 + 20 * rng.uniform(size=(5, N_GAIT)), jnp.float32)
    # by hand: the learned part starts at zero, so the prior is N(ridge, 11^2) over the grid
    ridge = coef[0] + np.asarray(gait, np.float64) @ coef[1:]
    expected = -0.5 * ((GRID_BPM[None] - ridge[:, None]) / 11.0) ** 2
    np.testing.assert_allclose(model.gait_prior(gait), expected, rtol=1e-5, atol=1e-3)
    f = len(GRID_BPM)
    acc = jnp.asarray(rng.uniform(size=(5, f, 3)), jnp.float32)

    def loss(m):
        return jnp.sum(m(acc, jnp.zeros((5, f, 1)), gait).hr)

    grads = eqx.filter_grad(loss)(model)
    np.testing.assert_array_equal(grads.gait_prior.coef, 0.0)  # the fit is not trained
    assert np.abs(np.asarray(grads.gait_prior.linear.weight)).sum() > 0  # the correction is
    # a model without the residual prior is left as it is
    plain = VirtualSensing("acc_refined", width=8, latent=2, gait=True, key=jax.random.key(0))
    assert with_gait_coef(plain, jnp.asarray(coef)) is plain and plain.gait_prior.coef is None

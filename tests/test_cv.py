"""The cross-validation runner: folds as masks, held-out tables, prediction scattered back."""

import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.cv import Split, padded_table, predict_held_out, predict_per_fold
from wearjax.data.folds import leave_k_runners_out
from wearjax.errors import WearjaxDataError


def test_held_out_table_lists_each_folds_test_sessions_once():
    test = leave_k_runners_out(5, 2, seed=0)  # folds of 2, 2 and 1 runners
    runner = np.array([0, 1, 1, 2, 3, 4, 4, 4])
    idx, ok = padded_table(test[:, runner])
    for k in range(test.shape[0]):
        assert sorted(idx[k][ok[k]].tolist()) == np.flatnonzero(test[k, runner]).tolist()
    assert sorted(idx[ok].tolist()) == list(range(len(runner)))  # every session exactly once


def test_split_by_subject_partitions_every_fold():
    subject = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5, 5])
    split = Split.by_subject(subject, 6, 2, n_validation=1, seed=3)
    both = split.test.astype(int) + split.validation + split.train
    assert np.all(both == 1)  # each session in exactly one role per fold
    for k in range(split.n_folds):  # roles are per subject, never split across one
        for role in (split.test, split.validation, split.train):
            for s in np.unique(subject):
                assert len(set(role[k, subject == s].tolist())) == 1
    np.testing.assert_array_equal(split.test.sum(0), 1)  # every session tested once
    np.testing.assert_array_equal(split.owner, np.argmax(split.test, axis=0))
    np.testing.assert_allclose(split.sampling_weights().sum(1), 1.0)
    # an unknown subject (-1) used to index the last subject's column: it joined its folds
    with pytest.raises(WearjaxDataError, match="2 of 12 items have a subject index outside 0..5"):
        Split.by_subject(np.r_[subject, -1, -1], 6, 2)
    # subjects with no item were dealt as folds' test or validation subjects: folds that
    # tested nothing, and one with no validation session, found only after all training
    with pytest.raises(WearjaxDataError, match=r"subjects \[6, 7\] of 0..7 hold no item"):
        Split.by_subject(subject, 8, 2)


def test_keep_subjects_draws_whole_subjects_from_each_folds_own_pool():
    subject = np.repeat(np.arange(9), 3)  # 9 subjects, 3 sessions each
    split = Split.by_subject(subject, 9, 2, n_validation=1, seed=1)
    for among, pool in (("train", split.train), ("fit", split.train | split.validation)):
        for n in (1, 3):
            keep = split.keep_subjects(subject, 9, n, seed=4, among=among)
            for k in range(split.n_folds):
                kept = np.unique(subject[keep[k]])
                assert len(kept) == n and set(kept) <= set(subject[pool[k]])
                np.testing.assert_array_equal(keep[k], np.isin(subject, kept))  # whole subjects
        every = split.keep_subjects(subject, 9, 99, among=among)  # more than a fold has: all
        np.testing.assert_array_equal(every, pool)
    same = split.keep_subjects(subject, 9, 2, seed=4)
    np.testing.assert_array_equal(same, split.keep_subjects(subject, 9, 2, seed=4))
    for n in (1, 2, 3):  # one seed ranks the subjects once: the n of a draw are among its n + 1
        small = split.keep_subjects(subject, 9, n, seed=4, among="fit")
        assert not (small & ~split.keep_subjects(subject, 9, n + 1, seed=4, among="fit")).any()
    draws = {split.keep_subjects(subject, 9, 2, seed=s).tobytes() for s in range(6)}
    assert len(draws) > 1  # the seed chooses
    with pytest.raises(ValueError, match="at least 1"):
        split.keep_subjects(subject, 9, 0)
    with pytest.raises(ValueError, match="among"):
        split.keep_subjects(subject, 9, 1, among="test")


def test_subsample_fits_on_n_subjects_and_tests_on_every_test_session():
    """`Split.subsample` and `Split.fit_subjects` against the masks, subject by subject."""
    subject = np.repeat(np.arange(12), 4)
    split = Split.by_subject(subject, 12, 3, n_validation=1, seed=0)
    sub = split.subsample(subject, 12, 3, seed=5)
    np.testing.assert_array_equal(sub.test, split.test)
    for k in range(split.n_folds):
        fit = sub.train[k] | sub.validation[k]
        kept = np.unique(subject[fit])
        assert len(kept) == 3 and not (fit & split.test[k]).any()
        assert set(kept) <= set(subject[split.train[k] | split.validation[k]])
        np.testing.assert_array_equal(fit, np.isin(subject, kept))
        assert not (sub.train[k] & sub.validation[k]).any()
    want = [len(set(subject[split.train[k] | split.validation[k]])) for k in range(split.n_folds)]
    assert split.fit_subjects(subject).tolist() == want and sub.fit_subjects(subject).max() == 3
    other = split.subsample(subject, 12, 3, seed=6)
    assert not np.array_equal(other.train | other.validation, sub.train | sub.validation)


def test_a_fold_without_validation_or_training_sessions_is_refused_before_training():
    """A subsampled split may keep no validation subject in a fold (the probe fits on training
    and validation together); a trainer's fold data refuse it up front, naming the folds,
    rather than early-stopping on a loss over nothing after every epoch has run."""
    subject = np.repeat(np.arange(10), 3)
    split = Split.by_subject(subject, 10, 2, n_validation=1, seed=0)
    split.check_trainable()
    sub = split.subsample(subject, 10, 3, seed=0)
    no_val = np.flatnonzero(~sub.validation.any(1)).tolist()
    assert no_val  # this draw leaves some fold without a validation subject
    with pytest.raises(
        WearjaxDataError, match=rf"folds {re.escape(str(no_val))} have no validation"
    ):
        sub.sampling_weights()
    bare = Split(split.test, split.validation, split.train & False)
    with pytest.raises(WearjaxDataError, match="have no training session"):
        bare.check_trainable()


def test_chronological_split_trains_on_the_past():
    order = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 0])  # e.g. start times
    split = Split.chronological(order, test_fraction=0.3, n_validation=2)
    assert split.n_folds == 1
    np.testing.assert_array_equal(np.flatnonzero(split.test[0]), [2, 4, 6])  # 9, 7, 8
    np.testing.assert_array_equal(np.flatnonzero(split.validation[0]), [0, 8])  # 5, 6
    assert order[split.train[0]].max() < order[split.validation[0]].min()
    assert (split.owner[split.test[0]] == 0).all() and (split.owner[~split.test[0]] == -1).all()
    with pytest.raises(WearjaxDataError, match="leaves none to train on"):
        Split.chronological(np.arange(3), test_fraction=0.5, n_validation=1)


def test_predict_held_out_scatters_each_fold_prediction_to_its_sessions():
    subject = np.array([0, 1, 1, 2, 3, 3])
    split = Split.by_subject(subject, 4, 1, seed=0)
    model = {"w": jnp.arange(split.n_folds, dtype=jnp.float32)}  # fold k predicts k + x
    data = jnp.arange(6, dtype=jnp.float32) * 10

    def predict(model, fold, data, i):
        return {"y": model["w"] + data[i] + jnp.zeros(3), "fold": fold}

    out = predict_held_out(predict, model, jnp.arange(split.n_folds), data, split, batch=2)
    expected = split.owner + 10.0 * np.arange(6)
    np.testing.assert_allclose(out["y"], np.repeat(expected[:, None], 3, axis=1))
    np.testing.assert_array_equal(out["fold"], split.owner)
    # sessions several folds validate on have no one prediction: the last fold's was kept
    with pytest.raises(ValueError, match="several folds' validation sets: use predict_per_fold"):
        predict_held_out(predict, model, jnp.arange(4), data, split, which="validation")


def test_predict_per_fold_keeps_sessions_that_several_folds_validate_on():
    """Validation sessions may belong to several folds: each fold's own prediction is kept."""
    subject = np.arange(8)
    split = Split.by_subject(subject, 8, 2, n_validation=2, seed=1)
    model = {"w": 100.0 * jnp.arange(split.n_folds, dtype=jnp.float32)}
    data = jnp.arange(8, dtype=jnp.float32)

    def predict(model, fold, data, i):
        return model["w"] + data[i]

    out, idx, ok = predict_per_fold(
        predict, model, jnp.arange(split.n_folds), data, split, which="validation"
    )
    assert out.shape == idx.shape == ok.shape
    for k in range(split.n_folds):
        assert set(idx[k][ok[k]]) == set(np.flatnonzero(split.validation[k]))
        np.testing.assert_allclose(out[k][ok[k]], 100.0 * k + idx[k][ok[k]])


def test_even_batches_pad_to_whole_batches_of_at_most_the_given_size():
    """`lax.map` compiles a remainder batch separately; `even_batches` avoids one by padding
    the held-out table with its last column to whole batches no larger than asked."""
    from wearjax.cv import even_batches

    for m, batch, size, width in ((12, 8, 6, 12), (13, 8, 7, 14), (5, 8, 8, 5), (9, None, None, 9)):
        table = np.resize(np.arange(2 * m, dtype=np.int32), (2, m))
        padded, got = even_batches(table, batch)
        assert got == size and padded.shape == (2, width)
        np.testing.assert_array_equal(padded[:, :m], table)
        np.testing.assert_array_equal(padded[:, m:], np.repeat(table[:, -1:], width - m, axis=1))
        assert size is None or m <= size or width % size == 0


def test_the_folds_spread_over_the_most_devices_that_share_them_evenly():
    """`default_mesh`'s count: every divisor of the folds up to the devices is a candidate,
    not only the common ones (4 folds on 3 devices: 2; their gcd gave 1)."""
    from wearjax.sharding import fold_devices

    for n_folds in range(1, 13):
        for n_devices in range(1, 9):
            want = [d for d in range(1, n_devices + 1) if n_folds % d == 0][-1]
            assert fold_devices(n_folds, n_devices) == want, (n_folds, n_devices)
    assert fold_devices(4, 3) == 2 and fold_devices(6, 4) == 3 and fold_devices(5, 2) == 1


def test_a_process_takes_its_contiguous_share_of_the_folds(monkeypatch):
    """Under jax.distributed with 2 processes, process 1 trains folds 2-3 of 4 (the split
    restricted to them, calibration sources included); 5 folds cannot be shared."""
    from wearjax.cv import process_folds

    assert process_folds(4).tolist() == [0, 1, 2, 3]  # one process: every fold
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert process_folds(4).tolist() == [2, 3]
    with pytest.raises(WearjaxDataError, match="5 folds cannot be shared evenly by 2"):
        process_folds(5)
    split = Split.chronological(np.arange(10), test_fraction=0.2, n_validation=1, n_folds=4)
    part = split.take([2, 3])
    np.testing.assert_array_equal(part.test, split.test[2:])
    np.testing.assert_array_equal(part.train, split.train[2:])
    np.testing.assert_array_equal(part.calibrate_from, [[False, False], [True, False]])
    assert Split(split.test, split.validation, split.train).take([1]).calibrate_from is None
    # the fold data and keys each training path takes, and the chronological split refused
    from wearjax.cv import this_process_folds

    plain = Split(split.test, split.validation, split.train)
    fold, keys, local = this_process_folds(plain, {"w": np.arange(4.0)}, np.arange(4) * 10)
    assert local.tolist() == [2, 3] and fold["w"].tolist() == [2.0, 3.0]
    assert keys.tolist() == [20, 30]
    with pytest.raises(WearjaxDataError, match="chronological split .* run it in one process"):
        this_process_folds(split, {"w": np.arange(4.0)}, np.arange(4))


HAR_SIZE = dict(width=16, latent=8, patch=10, depth=1, heads=2, dropout=0.1)


def _family(name: str):
    """A builder of one model family that `fit_folds` initialises (small sizes: the random draws
    and their transforms are what matters, not the sizes)."""
    from wearjax.models.har import ConvNet, HARModel
    from wearjax.models.hr_personalized import PersonalHRODE
    from wearjax.models.vo2 import build_vo2_model
    from wearjax.tasks.hr import build_model
    from wearjax.tasks.virtual import VirtualConfig, build

    return {
        "kalman": partial(build_model, "kalman", 7, 16, 2, window=60),
        "ode": partial(build_model, "ode", 7, 16, 2, window=60),
        "personal": lambda key: PersonalHRODE(6, 8, 32, window=60, asymmetric=True, key=key),
        "vo2": partial(build_vo2_model, 5, (16, 2), window=60),
        "har": lambda key: HARModel(((0, 1, 2), (3, 4, 5)), 4, key=key, **HAR_SIZE),
        "cnn": lambda key: ConvNet(6, 4, dropout=0.1, key=key),
        "virtual": partial(build, VirtualConfig(), "virtual"),
        "fusion": partial(build, VirtualConfig(), "fusion"),
    }[name]


# every family in the slow step: each compiles its initialiser twice, once at XLA's default
# level (5-18 s on 2 cores)
@pytest.mark.slow
@pytest.mark.parametrize(
    "family", ["kalman", "ode", "personal", "vo2", "har", "cnn", "virtual", "fusion"]
)
def test_initialiser_compiled_cheaply_gives_the_same_bits(family):
    """`cv.initialise` compiles with `INIT_COMPILER_OPTIONS`: every family's parameters must
    equal, bit for bit, those of XLA's default compile (otherwise every trained figure moves)."""
    from wearjax.cv import init_program, initialise

    keys = jax.random.split(jax.random.key(3), 2)
    init = lambda k: _family(family)(key=k)  # noqa: E731
    cheap, default = initialise(init, keys), init_program(init)(keys)
    assert jax.tree.structure(cheap) == jax.tree.structure(default)
    for a, b in zip(jax.tree.leaves(cheap), jax.tree.leaves(default), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_next_hr_model_is_built_ahead_only_where_training_leaves_cores(monkeypatch):
    from types import SimpleNamespace

    from wearjax import sharding

    def mesh(*platforms):
        return SimpleNamespace(devices=np.array([SimpleNamespace(platform=p) for p in platforms]))

    monkeypatch.setattr(sharding, "usable_cores", lambda: 2)
    assert sharding.cores_to_spare(mesh("cpu"))  # one device trains, one core to spare
    assert not sharding.cores_to_spare(mesh("cpu", "cpu"))  # a fold per core: none
    assert sharding.cores_to_spare(mesh("gpu", "gpu"))  # accelerators leave every core
    monkeypatch.setattr(sharding, "usable_cores", lambda: 1)
    assert not sharding.cores_to_spare(mesh("cpu"))


START_SCRIPT = """
import jax, numpy as np
from functools import partial
from wearjax.cv import compile_folds, initialise, make_mesh, split_for_fold
from wearjax.data.synthetic import simulate_cohort
from wearjax.tasks.hr import HRStudyConfig, build_model, make_task, prepare
from wearjax.train.loop import TrainConfig, init_state

cohort = simulate_cohort(jax.random.key(0), n_runners=4, sessions_per_runner=1,
                         min_minutes=4, max_minutes=4)
config = HRStudyConfig(train=TrainConfig(epochs=1, steps_per_epoch=1), batch_size=2,
                       runners_out=2)
data, fold, _, _ = prepare(cohort, config)
build = partial(build_model, "kalman", data.features.shape[-1], 8, 1, window=60)
init = lambda k: build(key=k)
recipe = config.train.recipe()
keys = jax.random.split(jax.random.key(1), 2)
init_keys, train_keys = jax.vmap(split_for_fold)(keys)
eager = jax.vmap(lambda p, k: init_state(p, recipe, k))(initialise(init, init_keys), train_keys)
program = compile_folds(init, make_task(config, cohort.x.shape[1]), data, fold,
                        recipe, keys, mesh=make_mesh(2, 1), compile=False)
leaves = jax.tree.leaves(jax.tree.map(
    lambda a: jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
    else a, (program.state, eager)))
half = len(leaves) // 2
for a, b in zip(leaves[:half], leaves[half:], strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.sharding.spec[0] == "fold" and len(a.sharding.device_set) == 2
print("ok")
"""


@pytest.mark.slow  # a fresh process with 2 devices: 20-30 s
def test_folds_start_sharded_from_one_program_with_the_eager_bits():
    """`compile_folds` builds the folds' initial training state in one jitted program, placed
    over the mesh's "fold" axis (eagerly, each optimiser leaf and each placement compiled a
    program of its own): the same bits as the eager start on one device."""
    from tests.scripts import run_on_devices

    assert run_on_devices(START_SCRIPT, 2).strip().endswith("ok")


def test_the_ode_engine_reaches_the_studys_ode_models_only():
    """`HRStudyConfig.ode_engine` sets how the ODE models solve; the quick demo builds on the
    scan engine, the full demo on Diffrax (the published figures' engine)."""
    from wearjax.tasks.hr import build_model
    from wearjax.tasks.presets import demo_config

    assert demo_config(True)[1].ode_engine == "scan"
    assert demo_config(False)[1].ode_engine == "diffrax"
    key = jax.random.key(0)
    for engine in ("scan", "diffrax"):
        assert build_model("ode", 4, 8, 1, window=60, key=key, ode_engine=engine).engine == engine
    assert build_model("ode", 4, 8, 1, window=60, key=key).engine == "diffrax"  # the default
    kalman = build_model("kalman", 4, 8, 1, window=60, key=key, ode_engine="scan")
    assert not hasattr(kalman, "engine")
    with pytest.raises(ValueError, match="unknown ODE engine 'rk45'"):
        build_model("ode", 4, 8, 1, window=60, key=key, ode_engine="rk45")


def test_the_gru_impl_reaches_every_gru_layer_of_both_kinds():
    """`HRStudyConfig.gru_impl` sets how the backbones' GRUs run: the quick demo on the
    hand-written reverse pass, the full demo on JAX's derivative (the published rounding), and
    the same weights either way (the implementation draws no random numbers)."""
    from wearjax.tasks.hr import build_model
    from wearjax.tasks.presets import demo_config

    assert demo_config(True)[1].gru_impl == "manual"
    assert demo_config(False)[1].gru_impl == "autodiff"
    key = jax.random.key(0)
    for kind in ("kalman", "ode"):
        default = build_model(kind, 4, 8, 2, window=60, key=key)
        manual = build_model(kind, 4, 8, 2, window=60, key=key, gru_impl="manual")
        assert [layer.impl for layer in default.backbone.gru.layers] == ["autodiff"] * 2
        assert [layer.impl for layer in manual.backbone.gru.layers] == ["manual"] * 2
        for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(manual), strict=True):
            np.testing.assert_array_equal(a, b)


RESUME_SCRIPT = """
import pathlib, tempfile
import jax, numpy as np
from wearjax.cv import fit_folds, make_mesh
from wearjax.data.synthetic import simulate_cohort
from wearjax.tasks.hr import HRStudyConfig, build_model, make_task, prepare
from wearjax.train.loop import TrainConfig

cohort = simulate_cohort(jax.random.key(0), n_runners=4, sessions_per_runner=1,
                         min_minutes=4, max_minutes=4)
train = TrainConfig(epochs=4, steps_per_epoch=1, early_stopping_patience=100)
config = HRStudyConfig(train=train, batch_size=2, runners_out=2)
data, fold, _, _ = prepare(cohort, config)
init = lambda k: build_model("kalman", data.features.shape[-1], 8, 1, window=60, key=k)
task = make_task(config, cohort.x.shape[1])
keys = jax.random.split(jax.random.key(1), 2)
path = pathlib.Path(tempfile.mkdtemp()) / "cv.state"
with jax.set_mesh(make_mesh(2, 1)):
    whole = fit_folds(init, task, data, fold, train.recipe(), keys)
    fit_folds(init, task, data, fold, train._replace(epochs=2).recipe(), keys, state_file=path)
    resumed = fit_folds(init, task, data, fold, train.recipe(), keys, state_file=path,
                        resume=True)
assert resumed.n_traces == 1, resumed.n_traces
for a, b in zip(jax.tree.leaves(whole.model), jax.tree.leaves(resumed.model), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
print("ok")
"""


@pytest.mark.slow  # a fresh process with 2 devices: about 30 s
def test_a_sharded_resume_compiles_its_epoch_once_and_ends_bit_for_bit():
    """The training state read back from its file is placed over the mesh as the fresh one
    is; read as single-device arrays it made the resumed run compile its epoch again."""
    from tests.scripts import run_on_devices

    assert run_on_devices(RESUME_SCRIPT, 2).strip().endswith("ok")

"""The activity-recognition task: `models.har` on labelled windows (`data.imu`), trained by the
one trainer and cross-validated by the one CV runner.

Folds are `cv.Split` masks over windows: leave-subjects-out (`Split.by_subject`, one other
subject per fold for early stopping) or a dataset's official split (`official_split`, where
the training windows double as the validation set: with 40 training recordings, none is
spared). Seeds of one split are folds too: `seeds` copies of it train in the same vmapped
program, so the spread over seeds costs one compile. Per fold, channels are standardised with
the training windows' mean and SD; training windows are augmented by a random gain per channel
(x0.9-1.1), Gaussian noise (0.05 SD) and a random circular shift in time.

Variants (`VARIANTS`): `cmd` (disentanglement + gradient modulation), `update_modulation`
(the same coefficients applied to each encoder's optimiser update instead of its gradient:
`scale_encoder_updates`, through the trainer's `Task.shape_update`), the ablations
`no_disentangle`, `no_modulation`, `acc_only`, `gyro_only` (one modality: no alignment and no
modulation; the orthogonality term still keeps its shared and specific parts apart), and the
plain 1-D CNN baseline `cnn`. The baselines (`tasks.har_baselines`) fit on the training and
validation windows; the neural models train on the training windows and stop early on the
validation ones.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax.cv import Split, fit_folds, padded_table, predict_per_fold
from wearjax.data.imu import LabelledWindows
from wearjax.errors import WearjaxDataError
from wearjax.eval.classification import accuracy, macro_f1
from wearjax.models.har import (
    ConvNet,
    HARModel,
    alignment_loss,
    modulation,
    orthogonality_loss,
    scale_gradient,
)
from wearjax.train.loop import Task, TrainConfig, validation_mean

VARIANTS = {
    "cmd": {},
    "update_modulation": {"modulate": "update"},
    "no_disentangle": {"align_weight": 0.0, "orth_weight": 0.0},
    "no_modulation": {"alpha": 0.0},
    "acc_only": {"modalities": ("acc",)},
    "gyro_only": {"modalities": ("gyro",)},
    "cnn": {"model": "cnn"},
}


class HARConfig(NamedTuple):
    model: str = "cmd"  # "cmd" (models.har.HARModel) or "cnn" (ConvNet)
    modalities: tuple[str, ...] = ("acc", "gyro")
    width: int = 32
    latent: int = 16
    patch_s: float = 0.2  # seconds per patch token
    depth: int = 1
    heads: int = 4
    dropout: float = 0.1
    align_weight: float = 0.1
    orth_weight: float = 0.1
    alpha: float = 0.5  # OGM's modulation strength; 0 switches it off
    modulate: str = "gradient"  # "gradient" (OGM's) or "update" (`update_modulation`)
    augment: bool = True
    batch_size: int = 32
    seeds: int = 3
    seed: int = 0
    train: TrainConfig = TrainConfig(
        learning_rate=1e-3, weight_decay=1e-4, epochs=60, steps_per_epoch=20,
        early_stopping_patience=30, plateau_patience=10,
    )  # fmt: skip

    def variant(self, name: str) -> HARConfig:
        if name not in VARIANTS:
            raise ValueError(f"unknown HAR variant {name!r}: choose one of {sorted(VARIANTS)}")
        return self._replace(**VARIANTS[name])


class HARData(NamedTuple):
    x: jax.Array  # [N, T, C]
    y: jax.Array  # [N]


class HARFold(NamedTuple):
    mean: jax.Array  # [C] training windows' channel means
    sd: jax.Array  # [C]
    train_p: jax.Array  # [N] sampling probability of each training window
    val_idx: jax.Array  # [V] validation windows (padded)
    val_ok: jax.Array  # [V] bool


def official_split(windows: LabelledWindows) -> Split:
    """One fold: the official test windows tested, the official training windows trained on
    and used as the validation set."""
    train = np.asarray(windows.official_train)[None]
    return Split(~train, train.copy(), train.copy())


def subject_split(windows: LabelledWindows, subjects_out: int = 2, seed: int = 0) -> Split:
    """Leave-`subjects_out`-subjects-out folds, one other subject per fold validating."""
    if windows.n_subjects < subjects_out + 2:
        raise WearjaxDataError(
            f"{windows.n_subjects} subjects known: a subject split needs at least "
            f"{subjects_out + 2}; use the dataset's official split"
        )
    return Split.by_subject(windows.subject, windows.n_subjects, subjects_out, seed=seed)


def make_folds(windows: LabelledWindows, split: Split) -> HARFold:
    """Per-fold normalisers and sampling tables `[K, ...]`."""
    w = split.train.astype(np.float64)[:, :, None]  # [K, N, 1]
    per_window = windows.x.astype(np.float64).mean(1)  # [N, C]
    sq = np.square(windows.x.astype(np.float64)).mean(1)
    mean = (w * per_window[None]).sum(1) / w.sum(1)
    sd = np.sqrt(np.maximum((w * sq[None]).sum(1) / w.sum(1) - mean**2, 1e-12))
    val_idx, val_ok = padded_table(split.validation)
    return HARFold(
        jnp.asarray(mean, jnp.float32), jnp.asarray(sd, jnp.float32),
        jnp.asarray(split.sampling_weights()), jnp.asarray(val_idx), jnp.asarray(val_ok),
    )  # fmt: skip


def build_model(config: HARConfig, windows: LabelledWindows, key) -> eqx.Module:
    n_classes = len(windows.classes)
    if config.model == "cnn":
        return ConvNet(windows.x.shape[2], n_classes, dropout=config.dropout, key=key)
    channels = tuple(windows.modalities[m] for m in config.modalities)
    patch = max(1, round(config.patch_s * windows.rate))
    return HARModel(
        channels, n_classes, width=config.width, latent=config.latent, patch=patch,
        depth=config.depth, heads=config.heads, dropout=config.dropout, key=key,
    )  # fmt: skip


def _augment(x, key):
    k1, k2, k3 = jax.random.split(key, 3)
    gain = jax.random.uniform(k1, (1, x.shape[1]), minval=0.9, maxval=1.1)
    shift = jax.random.randint(k3, (), 0, x.shape[0])
    return jnp.roll(x * gain + 0.05 * jax.random.normal(k2, x.shape), shift, axis=0)


def forward(model, x, y, key, alpha: float, scale: bool = True):
    """Batch outputs and the modulation coefficients; gradient modulation applied when
    `alpha > 0`, the model has several modalities and `scale` (else the coefficients are only
    computed, for `update_modulation`)."""
    keys = jax.random.split(key, (x.shape[0], 2))
    if isinstance(model, ConvNet):
        return jax.vmap(lambda xi, k: model(xi, key=k))(x, keys[:, 0]), jnp.ones(1)
    h = jax.vmap(model.encode)(x, keys[:, 0])  # [B, M, width]
    m = h.shape[1]
    k = jnp.ones(m)
    if alpha > 0 and m > 1:
        k = modulation(jax.vmap(model.heads)(jax.lax.stop_gradient(h)).modality_logits, y, alpha)
        h = scale_gradient(h, k[None, :, None]) if scale else h
    return jax.vmap(model.heads)(h, keys[:, 1]), k


def make_task(config: HARConfig) -> Task:
    def sample(data: HARData, fold: HARFold, key):
        k1, k2 = jax.random.split(key)
        i = jax.random.choice(k1, data.y.shape[0], (config.batch_size,), p=fold.train_p)
        x = normalise(data.x[i], fold)
        if config.augment:
            x = jax.vmap(_augment)(x, jax.random.split(k2, x.shape[0]))
        return x, data.y[i]

    on_update = config.modulate == "update"
    if config.modulate not in ("gradient", "update"):
        raise ValueError(f"modulate must be 'gradient' or 'update', got {config.modulate!r}")

    def loss(model, batch, key, epoch):
        x, y = batch
        out, k = forward(model, x, y, key, config.alpha, scale=not on_update)
        ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out.logits, y))
        align = alignment_loss(out.shared)
        orth = orthogonality_loss(out.shared, out.specific) if out.shared.shape[-1] else ce * 0
        total = ce + config.align_weight * align + config.orth_weight * orth
        aux = {"ce": ce, "align": align, "orth": orth, "k_min": jnp.min(k)}
        return total, (aux | {"k": k}) if on_update else aux

    def validate(model, data: HARData, fold: HARFold):
        x = normalise(data.x[fold.val_idx], fold)
        logits = jax.vmap(lambda xi: model(xi).logits)(x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, data.y[fold.val_idx])
        return validation_mean(ce, fold.val_ok.astype(ce.dtype))

    shape = scale_encoder_updates if on_update and config.model == "cmd" else None
    return Task(sample, loss, validate, shape)


def scale_encoder_updates(updates, aux):
    """`update_modulation`: each modality's encoder update (the optimiser's direction: Adam's,
    weight decay included) times its `k_u` (`aux["k"]`, the batch's OGM coefficients), the
    heads' unchanged. Under Adam a gradient scale that holds over many batches mostly cancels
    in the moments' ratio, and the trainer's global-norm clip before it rescales a modulated
    gradient as a whole; this scales the step itself, after both, as OGM's scale does under
    the SGD its authors trained with."""
    k = aux["k"]
    if len(updates.encoders) == 1:
        return updates
    scaled = tuple(jax.tree.map(lambda u, i=i: u * k[i], enc)
                   for i, enc in enumerate(updates.encoders))  # fmt: skip
    return eqx.tree_at(lambda u: u.encoders, updates, scaled)


def normalise(x, fold: HARFold):
    """Windows standardised as the fold's model was trained."""
    shape = (1,) * (x.ndim - 1) + (-1,)
    return (x - fold.mean.reshape(shape)) / fold.sd.reshape(shape)


def predict(model, fold: HARFold, data: HARData, i):
    """Logits of window `i` (`cv.predict_per_fold`)."""
    return model(normalise(data.x[i], fold)).logits


class HARResult(NamedTuple):
    accuracy: np.ndarray  # [S K] per seed and fold (seed-major)
    macro_f1: np.ndarray  # [S K]
    logits: np.ndarray  # [S K, M, classes] each fold's test windows (`index`, `ok`)
    index: np.ndarray  # [S K, M] window index
    ok: np.ndarray  # [S K, M] bool, False for padding
    history: dict
    model: eqx.Module  # [S K] stacked trained models
    folds: HARFold  # [S K] their normalisers and tables

    def one(self, i: int = 0) -> tuple[eqx.Module, HARFold]:
        """The trained model and fold of (seed-major) fold `i`."""
        take = lambda a: a[i] if eqx.is_array(a) else a  # noqa: E731
        return jax.tree_util.tree_map(take, self.model), jax.tree_util.tree_map(take, self.folds)


def run(windows: LabelledWindows, split: Split, config: HARConfig, *, progress=False) -> HARResult:
    """Train `config.seeds` copies of every fold of `split` in one vmapped program and score
    each fold's test windows: accuracy and macro-F1 per (seed, fold)."""
    s = config.seeds
    big = Split(*(np.tile(m, (s, 1)) for m in split[:3]))  # seed-major copies of the folds
    folds = make_folds(windows, big)
    data = HARData(jnp.asarray(windows.x), jnp.asarray(windows.y))
    keys = jax.random.split(jax.random.key(config.seed), big.n_folds)
    fit = fit_folds(
        lambda key: build_model(config, windows, key), make_task(config), data, folds,
        config.train.recipe(), keys, progress=progress,
    )  # fmt: skip
    logits, idx, ok = predict_per_fold(predict, fit.model, folds, data, big, batch=256)
    pred, y, ok_j = jnp.argmax(logits, -1), data.y[jnp.asarray(idx)], jnp.asarray(ok)
    n_classes = len(windows.classes)
    acc = np.asarray(jax.vmap(accuracy)(pred, y, ok_j))
    f1 = np.asarray(jax.vmap(lambda p, t, m: macro_f1(p, t, m, n_classes))(pred, y, ok_j))
    return HARResult(acc, f1, np.asarray(logits), idx, ok, fit.history, fit.model, folds)

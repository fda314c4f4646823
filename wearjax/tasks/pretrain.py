"""Masked pretraining of the channel-aware transformer (`models.transformer`) through the one
trainer; its corpora are built in `tasks.pretrain_corpus`.

A sample is a window of `C` channels at the nominal rate (`x [C, T]`, channels that are padding
marked by `ok [C]`). Inside the jitted loss the window goes through `signal.cwt.scalogram` at
the configured scales, a mask hides patches of each channel, the encoder sees the grid with
masked patches replaced by its mask token, and the decoder reconstructs each channel's raw
(standardised) signal. The loss is the MSE over time columns weighted by the fraction of the
column's patches that were masked, so unmasked columns do not count (NormWear's "MSE on the
masked part" on a fixed-shape grid). One channel per window also has its levels (mean and SD,
`signal.cwt.levels`) hidden; their MSE, from that channel's [CLS] token, is added with weight
`level_weight`; with `level_targets="all"` every real channel's [CLS] token predicts its own
levels as well (the visible ones from their input, the hidden one through the fusion), so the
encoder's output keeps them where a linear probe can read them. With `hide_channel`, that
channel's patches are all hidden as well, so its signal and levels can only come from the
other channels, through the liaison fusion: the relations between channels (ventilation
against CO2 output, HR against VO2) become the task.

With `contrast_weight > 0` half of each batch are anchors and half their partners: a window of
the same recording at most `contrast_reach` hops away (`partners`). Each window's embedding for
this term is the mean of its real channels' [CLS] tokens, scaled to unit length, and a
symmetric InfoNCE loss (temperature `contrast_temperature`; the other pairs of the batch are
the negatives) asks it to pick its partner out of the batch: features that stay put over a
minute or two of one recording (how hard the body works) are kept, and what changes from one
window to the next is not (a temporal contrastive term, as in time-contrastive learning). The
two windows of a pair get their own masks, so masking is part of the contrast.

With `contrast_negatives="batch"` the negatives are the other pairs of the batch, mostly other
recordings: the term is solved most easily by coding who and what was recorded (a subject's
fingerprint), which a probe scored on unseen subjects cannot use. With `"recording"` the
anchors come in groups of `contrast_group` windows of one recording (`recording_groups`) and a
window's negatives are only the partners of its own group that lie more than `contrast_reach`
hops from it (`contrast_mask`): what tells them apart is what changes within a recording over
minutes (how hard the body works), and what a recording keeps throughout earns nothing.

Early stopping watches whole recordings never trained on (`corpus_fold`; "windows": old).

Masks (`patch_mask`), with `mask_ratio` of the patches hidden: `random` (any patches, exactly
`round(ratio P)` per channel), `time` (whole time columns), `scale` (whole scale rows), `mixed`
(one of the three, drawn per channel of each sample). For these the scalogram is computed from
the whole signal, as in NormWear, and that leaks the target: the planes are a linear,
overcomplete map of the signal whose widest wavelets span the window, so the visible patches
determine the hidden columns up to the map's conditioning. `inpaint` hides whole time
columns in the signal itself: the planes and levels are computed from the visible samples only
(`signal.cwt.visible_planes`: standardised on them, 0 elsewhere) and the hidden columns are
reconstructed as departures from the visible mean in the window's SD, so nothing of the target
reaches the encoder.

The default corpus (`synthetic_corpus`) is 1 Hz physiology: 60 s windows of four channels drawn
from HR, VO2 and the running channels of the simulated cohort (no real recording is used, so
probes on real data never see their test subjects during pretraining). `cpet_corpus` adds real
metabolic windows (HR, VO2, VCO2, VE) from pyoxynet's resting-to-exercise tests, whose subjects
are not among the ramp tests the metabolic-domain probe is scored on; `join_corpora` joins them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax.models.transformer import PATCH, build_transformer
from wearjax.signal import cwt as planes_of
from wearjax.signal.cwt import MAX_FRACTION, levels, scale_grid, scalogram, signal_planes
from wearjax.tasks.pretrain_corpus import (
    WRIST_RATE,
    Corpus,
    cpet_corpus,
    join_corpora,
    synthetic_corpus,
    wrist_corpus,
)
from wearjax.tasks.pretrain_masks import MASKINGS, check_mask_ratio, patch_mask
from wearjax.train import checkpoints
from wearjax.train.loop import Task, TrainConfig, fit

LEVEL_TARGETS = ("hidden", "all")
NEGATIVES = ("batch", "recording")
VALIDATIONS = ("recordings", "windows")


class PretrainConfig(NamedTuple):
    size: str = "small"
    nominal_rate: float = 1.0  # Hz
    low_hz: float = 1 / 60
    high_hz: float = 0.25  # a quarter of the rate (signal.cwt.MAX_FRACTION)
    n_scales: int = 65
    mask_ratio: float = 0.8
    masking: str = "mixed"
    level_weight: float = 0.1  # the hidden levels' MSE beside the signal's
    hide_channel: bool = False  # hide all of the hidden-levels channel's patches too
    level_targets: str = "hidden"  # "all": every channel's [CLS] predicts its levels too
    contrast_weight: float = 0.0  # the temporal InfoNCE term beside the MSE (module docstring)
    contrast_reach: int = 2  # hops to a window's partner (2 x 30 s in the 1 Hz corpora)
    contrast_temperature: float = 0.1
    contrast_negatives: str = "batch"  # "recording": only other times of the same recording
    contrast_group: int = 4  # anchors per recording with contrast_negatives="recording"
    batch_size: int = 16
    seed: int = 0
    validation: str = "recordings"  # early stopping on held-out recordings ("windows": random)
    train: TrainConfig = TrainConfig(
        learning_rate=5e-4, weight_decay=1e-5, epochs=30, steps_per_epoch=40,
        early_stopping_patience=10,
    )  # fmt: skip

    @property
    def freqs(self) -> np.ndarray:
        return scale_grid(self.low_hz, self.high_hz, self.n_scales)

    def header(self) -> dict:
        """What a checkpoint of the encoder records (enough to rebuild and to feed it)."""
        return {
            "kind": "transformer", "size": self.size, "nominal_rate": self.nominal_rate,
            "low_hz": self.low_hz, "high_hz": self.high_hz, "n_scales": self.n_scales,
        }  # fmt: skip


class CorpusFold(NamedTuple):
    train_p: jax.Array  # [N]
    val_idx: jax.Array  # [V]
    val_pool: jax.Array  # [N] bool: windows a validation anchor's partners may be drawn from


WRIST = PretrainConfig(nominal_rate=WRIST_RATE, low_hz=0.25, high_hz=6.25, n_scales=25)
"""The wrist-rate encoder's settings: 25 Hz, 25 scales over 0.25-6.25 Hz (15-375 per minute:
breathing to the step rate's second harmonic), 8 s windows (`wrist_corpus`)."""


CORPORA = ("synthetic", "cpet", "both", "wrist")


def named_corpus(name: str, seed: int = 0, quick: bool = False) -> tuple[Corpus, PretrainConfig]:
    """The corpus `CORPORA` names and the configuration it is pretrained with: the simulated
    cohort's 1 Hz physiology, pyoxynet's real resting tests, both (`PretrainConfig()`), or the
    simulated wrist at 25 Hz (`WRIST`; 4 subjects instead of 8 when `quick`)."""
    if name == "wrist":
        return wrist_corpus(4 if quick else 8, seed=seed), WRIST
    if name not in CORPORA:
        raise ValueError(f"unknown pretraining corpus {name!r}: choose one of {CORPORA}")
    parts = {"synthetic": ("synthetic",), "cpet": ("cpet",), "both": ("synthetic", "cpet")}
    made = [synthetic_corpus(seed=seed) if p == "synthetic" else cpet_corpus() for p in parts[name]]
    return join_corpora(*made), PretrainConfig()


def batch_masks(key, ok, rows: int, cols: int, config: PretrainConfig):
    """`(mask [B, C, rows * cols], hide [B, C])`: each channel's hidden patches (`patch_mask`)
    and the one real channel per window whose levels are hidden (all of its patches too, with
    `config.hide_channel`)."""
    b, c = ok.shape
    keys = jax.random.split(key, (b, c))
    mask = jax.vmap(
        jax.vmap(lambda k: patch_mask(k, rows, cols, config.mask_ratio, config.masking))
    )(keys)
    score = jnp.where(ok, jax.random.uniform(jax.random.fold_in(key, 1), ok.shape), -1.0)
    hide = jax.nn.one_hot(jnp.argmax(score, axis=1), c, dtype=bool) & ok  # one channel each
    if config.hide_channel:
        mask = mask | hide[..., None]
    return mask, hide


def masked_loss(model, x, ok, key, config: PretrainConfig, allowed=None):
    """The masked-reconstruction MSE of a batch `x [B, C, T]` (module docstring), plus the
    contrastive term when it is on (`allowed`: its negatives, `contrast_loss`)."""
    r = config.nominal_rate
    rows, cols = patch_grid(config, x.shape[-1])
    b, c = x.shape[:2]
    mask, hide = batch_masks(key, ok, rows, cols, config)
    module = model.module
    if config.masking == "inpaint":  # hidden in the signal: nothing of it reaches the planes
        hidden_t = jnp.repeat(mask.reshape(b, c, rows, cols)[:, :, 0], PATCH[1], axis=-1)
        tail = jnp.zeros((b, c, x.shape[-1] - cols * PATCH[1]), bool)
        seen, stats = planes_of.visible_planes(x, ~jnp.concatenate([hidden_t, tail], axis=-1))
        planes = planes_of.cwt(seen, planes_of.wavelet_width(config.freqs, r))  # [B, C, 3, S, T]
        lv = jnp.arcsinh(stats)  # the visible stretch's levels
        # the hidden stretch's departure from the visible mean, in the window's SD: in the
        # visible stretch's own SD a near-flat stretch before a rise gives targets of 1e3 SDs
        # (the target's units reach no input, so the window's SD leaks nothing)
        z = (x - stats[..., :1]) / (x.std(-1, keepdims=True) + 1e-6)
        flat = signal_planes(x, r, r)[:, :, 0].std(-1) == 0  # a constant channel: zero
        target = jnp.where(flat[..., None], 0.0, z)[..., : cols * PATCH[1]]
    else:
        planes = scalogram(x, r, r, config.freqs)  # [B, C, 3, S, T]
        lv = levels(x, r, r)  # [B, C, 2]
        target = signal_planes(x, r, r)[:, :, 0, : cols * PATCH[1]]
    tokens = jax.vmap(
        lambda p, m, o, v, h: module.encode(p, m, channel_ok=o, levels=v, hide_levels=h)
    )(planes, mask, ok, lv, hide)
    recon = jax.vmap(lambda t: module.reconstruct(t, rows, cols))(tokens)  # [B, C, cols*9]
    hidden = mask.reshape(b, c, rows, cols).mean(axis=2)  # masked fraction per column
    w = jnp.repeat(hidden, PATCH[1], axis=-1) * ok[..., None].astype(hidden.dtype)
    signal_mse = jnp.sum(w * jnp.square(recon - target)) / jnp.maximum(jnp.sum(w), 1e-6)
    guess = module.level_head(tokens[:, :, 0])  # [B, C, 2] from each [CLS] token
    check_config(config)
    h = (hide if config.level_targets == "hidden" else ok).astype(lv.dtype)
    level_mse = jnp.sum(h[..., None] * jnp.square(guess - lv)) / jnp.maximum(2.0 * jnp.sum(h), 1.0)
    loss = signal_mse + config.level_weight * level_mse
    if config.contrast_weight > 0:
        loss = loss + config.contrast_weight * contrast_loss(
            tokens[:, :, 0], ok, config.contrast_temperature, allowed
        )
    return loss


def contrast_loss(cls, ok, temperature: float, allowed=None):
    """Symmetric InfoNCE of a batch whose first half are anchors and second half their
    partners, in order (module docstring); `cls [B, C, D]` each channel's [CLS] token.
    `allowed [B/2, B/2]` (symmetric, True on the diagonal; `contrast_mask`) keeps only some
    pairs as each other's negatives; None keeps all."""
    w = ok[..., None].astype(cls.dtype)
    z = jnp.sum(cls * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
    half = z.shape[0] // 2
    logits = z[:half] @ z[half:].T / temperature
    if allowed is not None:
        logits = jnp.where(allowed, logits, -jnp.inf)
    labels = jnp.arange(half)
    ce = optax.softmax_cross_entropy_with_integer_labels
    return 0.5 * (jnp.mean(ce(logits, labels)) + jnp.mean(ce(logits.T, labels)))


def contrast_mask(i, j, recording, reach: int):
    """`[B, B]` bool for anchors `i [B]` and their partners `j [B]` (window indices; a
    recording's windows are consecutive): pair b is a negative of pair a when both come from
    one recording, neither window of one lies within `reach` hops of the other's partner, and
    the anchors differ; every pair is its own positive. Symmetric in a and b."""
    same = recording[i][:, None] == recording[i][None, :]
    apart = (jnp.abs(i[:, None] - j[None, :]) > reach) & (jnp.abs(j[:, None] - i[None, :]) > reach)
    distinct = i[:, None] != i[None, :]
    return (same & apart & distinct) | jnp.eye(i.shape[0], dtype=bool)


def recording_groups(key, seeds, recording, allowed, group: int):
    """`[len(seeds) * group]` window indices: each seed, then `group - 1` other `allowed`
    windows of its recording drawn without replacement (the seed again where the recording has
    too few; `contrast_mask` keeps such repeats out of each other's negatives)."""
    n = recording.shape[0]
    same = (recording[None, :] == recording[seeds][:, None]) & allowed[None, :]
    same = same & (jnp.arange(n)[None, :] != seeds[:, None])
    score = jnp.where(same, jax.random.uniform(key, same.shape), -1.0)
    top, pick = jax.lax.top_k(score, group - 1)
    pick = jnp.where(top >= 0, pick, seeds[:, None])
    return jnp.concatenate([seeds[:, None], pick], axis=1).reshape(-1)


def partners(key, i, recording, allowed, reach: int):
    """For each window index in `i`, a window of the same recording at most `reach` hops
    away, not itself, drawn uniformly from those `allowed` (a `[N]` bool); the window itself
    when there is none."""
    offsets = jnp.concatenate([jnp.arange(-reach, 0), jnp.arange(1, reach + 1)])
    j = i[:, None] + offsets[None]  # [B, 2 reach]
    inside = (j >= 0) & (j < recording.shape[0])
    j = jnp.clip(j, 0, recording.shape[0] - 1)
    valid = inside & (recording[j] == recording[i][:, None]) & allowed[j]
    score = jnp.where(valid, jax.random.uniform(key, j.shape), -1.0)
    best = jnp.argmax(score, axis=1)
    pick = jnp.take_along_axis(j, best[:, None], axis=1)[:, 0]
    return jnp.where(jnp.any(valid, axis=1), pick, i)


def make_task(config: PretrainConfig) -> Task:
    pairs = config.contrast_weight > 0
    within = pairs and config.contrast_negatives == "recording"

    def with_partners(data: Corpus, i, allowed, key):
        """`(x, ok, allowed)`: the windows (anchors then partners) and the pairs' negatives."""
        if not pairs:
            return data.x[i], data.ok[i], None
        if within:  # (the batch mode's draws stay those of earlier rounds)
            k_group, key = jax.random.split(key)
            i = recording_groups(k_group, i, data.recording, allowed, config.contrast_group)
        j = partners(key, i, data.recording, allowed, config.contrast_reach)
        mask = contrast_mask(i, j, data.recording, config.contrast_reach) if within else None
        both = jnp.concatenate([i, j])
        return data.x[both], data.ok[both], mask

    def seeds_per_batch() -> int:
        n = config.batch_size // 2 if pairs else config.batch_size
        return n // config.contrast_group if within else n

    def sample(data: Corpus, fold: CorpusFold, key):
        k_i, k_j = jax.random.split(key)
        i = jax.random.choice(k_i, data.x.shape[0], (seeds_per_batch(),), p=fold.train_p)
        return with_partners(data, i, fold.train_p > 0, k_j)

    def loss(model, batch, key, epoch):
        x, ok, allowed = batch
        return masked_loss(model, x, ok, key, config, allowed), ()

    def validate(model, data: Corpus, fold: CorpusFold):
        # the same partners and masks each epoch; with pairs, in groups of a training batch's
        # size, so that the contrastive term has as many negatives as in training. Partners
        # (and, with negatives from the recording, the rest of each anchor's group) come from
        # `fold.val_pool`: the held-out recordings' windows, or with validation="windows" any
        # window (a random validation window rarely shares its recording with another)
        pool = fold.val_pool
        if not pairs:
            x, ok, _ = with_partners(data, fold.val_idx, pool, jax.random.key(1))
            return masked_loss(model, x, ok, jax.random.key(0), config)
        n = min(seeds_per_batch(), len(fold.val_idx))  # one group when validation is small
        groups = fold.val_idx[: len(fold.val_idx) // n * n].reshape(-1, n)

        def one(idx):
            x, ok, allowed = with_partners(data, idx, pool, jax.random.key(1))
            return masked_loss(model, x, ok, jax.random.key(0), config, allowed)

        return jnp.mean(jax.lax.map(one, groups))

    return Task(sample, loss, validate)


def corpus_fold(recording, n_validation: int, seed: int = 0, by: str = "recordings") -> CorpusFold:
    """The early-stopping split of a corpus whose windows come from `recording [N]`.

    `by="recordings"`: whole recordings held out, a tenth of them (at least one, and more while
    they hold fewer than `n_validation` windows, never all), and `n_validation` of their windows,
    evenly spread, validated each epoch; none of their windows is trained on. Windows of one
    recording overlap and share its subject, so a random window's neighbours are trained on and
    its loss reads low: `by="windows"` (a random `n_validation` windows, the rest trained on)
    is the split of earlier rounds, kept to repeat their encoders."""
    recording = np.asarray(recording)
    n = len(recording)
    rng = np.random.default_rng(seed)
    if by == "windows":
        val = np.sort(rng.choice(n, n_validation, replace=False))
        held, pool = np.isin(np.arange(n), val), np.ones(n, bool)
    else:
        ids = np.unique(recording)
        if len(ids) < 2:
            raise ValueError(
                f"the corpus has {len(ids)} recording: hold out whole recordings needs 2 or "
                f"more; give more recordings or validation='windows'"
            )
        order = rng.permutation(ids)
        counts = np.array([np.sum(recording == r) for r in order])
        k = max(1, -(-len(ids) // 10))
        k = min(max(k, int(np.searchsorted(np.cumsum(counts), n_validation)) + 1), len(ids) - 1)
        held = np.isin(recording, order[:k])
        idx = np.flatnonzero(held)
        val = idx[np.unique(np.linspace(0, len(idx) - 1, min(n_validation, len(idx))).round())
                  .astype(int)]  # fmt: skip
        pool = held
    p = np.where(held, 0.0, 1.0).astype(np.float32)
    return CorpusFold(jnp.asarray(p / p.sum()), jnp.asarray(val), jnp.asarray(pool))


def patch_grid(config: PretrainConfig, samples: int) -> tuple[int, int]:
    """`(rows, cols)`: the scale rows and time columns of patches of a `samples`-long window."""
    return len(config.freqs) // PATCH[0], samples // PATCH[1]


def check_grid(config: PretrainConfig, samples: int) -> None:
    """`check_mask_ratio` on the patch grid of `samples`-long windows under `config`."""
    check_mask_ratio(config.mask_ratio, *patch_grid(config, samples), config.masking)


def check_config(config: PretrainConfig) -> None:
    """Refuse a masking or level-target setting the loss does not know, or a contrastive
    term without pairs to contrast, naming the fix."""
    pairs_ok = config.batch_size >= 4 and config.batch_size % 2 == 0
    if config.contrast_weight > 0 and (not pairs_ok or config.contrast_reach < 1):
        raise ValueError(
            f"contrast_weight > 0 needs an even batch_size >= 4 (anchors and their partners; "
            f"got {config.batch_size}) and contrast_reach >= 1 (got {config.contrast_reach})"
        )
    if config.masking not in MASKINGS:
        raise ValueError(f"unknown masking {config.masking!r}: choose one of {MASKINGS}")
    if config.masking == "inpaint" and config.hide_channel:
        raise ValueError(
            "masking='inpaint' reconstructs a channel from its visible stretch's mean, which "
            "hide_channel leaves empty: use one of them"
        )
    if config.contrast_negatives not in NEGATIVES:
        raise ValueError(
            f"unknown contrast_negatives {config.contrast_negatives!r}: choose one of {NEGATIVES}"
        )
    if config.contrast_negatives == "recording" and config.contrast_weight > 0:
        if config.contrast_group < 2 or (config.batch_size // 2) % config.contrast_group:
            raise ValueError(
                f"contrast_negatives='recording' needs contrast_group >= 2 dividing half the "
                f"batch ({config.batch_size // 2} anchors; got {config.contrast_group})"
            )
    if config.validation not in VALIDATIONS:
        raise ValueError(f"unknown validation {config.validation!r}: choose one of {VALIDATIONS}")
    if config.level_targets not in LEVEL_TARGETS:
        raise ValueError(
            f"unknown level_targets {config.level_targets!r}: choose one of {LEVEL_TARGETS}"
        )
    top = MAX_FRACTION * config.nominal_rate
    if not 0 < config.low_hz < config.high_hz <= top:
        raise ValueError(
            f"scales low_hz={config.low_hz:g} to high_hz={config.high_hz:g} Hz: give 0 < low_hz "
            f"< high_hz <= {top:g} (a quarter of nominal_rate={config.nominal_rate:g} Hz)"
        )
    if config.n_scales < PATCH[0] or config.n_scales % PATCH[0]:
        raise ValueError(f"n_scales={config.n_scales}: give a multiple of {PATCH[0]} (a patch)")


def pretrain(
    corpus: Corpus, config: PretrainConfig, *, progress=False, n_validation: int = 64,
    state_file=None, resume: bool = False,
):  # fmt: skip
    """Train the encoder of `config.size` on `corpus`; the `train.FitResult`. The settings are
    checked (`check_config`) before anything is built. With a `state_file` the training state
    is saved every epoch and on Ctrl-C, and `resume` continues from it (`train.fit`: the same
    weights as an uninterrupted run; other settings or another corpus are refused)."""
    check_config(config)
    check_grid(config, corpus.x.shape[-1])
    k_init, k_train = jax.random.split(jax.random.key(config.seed))
    model = build_transformer(config.size, key=k_init)
    n_val = min(n_validation, corpus.x.shape[0] // 5)
    fold = corpus_fold(corpus.recording, n_val, config.seed, config.validation)
    run = {"task": "pretrain", **checkpoints.run_settings(config), "n_validation": n_val}
    return fit(
        model, make_task(config), corpus, fold, config.train.recipe(), k_train, progress=progress,
        state_file=state_file, resume=resume, run=run,
    )  # fmt: skip


def save_encoder(path, model, config: PretrainConfig):
    """The pretrained encoder in one checkpoint file (`train.checkpoints`: JSON header with the
    size, nominal rate and scales, then the weights)."""
    return checkpoints.save(path, config.header(), model)


def _encoder_skeleton(header: dict):
    if header.get("kind") != "transformer":
        raise KeyError(f"not an encoder: a {header.get('task', header.get('kind'))!r} model")
    return build_transformer(header["size"], key=jax.random.key(0))


def load_encoder(path):
    """`(model, header)` of a checkpoint written by `save_encoder`."""
    refit = "pretrain it again with `wearjax fit pretrain`"
    header, model = checkpoints.load(path, _encoder_skeleton, refit)
    return model, header

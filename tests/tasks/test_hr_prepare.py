"""What `tasks.hr.prepare` refuses before any training."""

import jax
import numpy as np
import pytest

from wearjax.data.folds import Split
from wearjax.data.synthetic import simulate_cohort
from wearjax.errors import WearjaxDataError
from wearjax.tasks.hr import HRStudyConfig, prepare


def _three_runners():
    """Three runners whose longest sessions differ, and segments just longer than the shortest
    runner's longest session: `(cohort, config, fold, short, long, other)`, `fold(r)` one
    fold holding runner r."""
    cohort = simulate_cohort(jax.random.key(0), n_runners=3, sessions_per_runner=2,
                             min_minutes=5.0, max_minutes=20.0, bucket=60)  # fmt: skip
    lengths, runner = np.asarray(cohort.lengths), np.asarray(cohort.runner)
    longest = np.asarray([lengths[runner == r].max() for r in range(3)])
    short, long = int(np.argmin(longest)), int(np.argmax(longest))
    assert longest[short] < longest[long]
    config = HRStudyConfig(segment_windows=int(longest[short]) // 60 + 1)  # 60 s windows
    assert config.window * config.segment_windows <= longest[long]
    fold = lambda r: (runner == r)[None]  # noqa: E731
    return cohort, config, fold, short, long, 3 - short - long


@pytest.mark.parametrize("side", ["validation", "training"])
def test_a_fold_whose_validation_or_training_runners_hold_no_segment_is_refused(side):
    """Validation segments tile sessions at least one segment long; a fold whose validation
    runners have none validated nothing, and until 2026-12-07 trained until early stopping
    gave up, then failed the whole study with no finite validation loss. A fold with no
    training segment was a plain ValueError, which `wearjax cv hr` printed as a traceback (a
    folder with one long run passes the CLI's check of one segment, and a fold that holds that
    run out has none left)."""
    cohort, config, fold, short, long, other = _three_runners()
    validation, train = (short, long) if side == "validation" else (long, short)
    refused = Split(test=fold(other), validation=fold(validation), train=fold(train))
    named = cohort.runner_names[short]
    want = rf"fold\(s\) \[0\] have no {side} segment of \d+ s: .* runner\(s\) \['{named}'\]"
    with pytest.raises(WearjaxDataError, match=want):
        prepare(cohort, config, refused)
    _, folded, _, _ = prepare(cohort, config, Split(fold(other), fold(long), fold(long)))
    assert float(folded.val_weight.sum()) > 0

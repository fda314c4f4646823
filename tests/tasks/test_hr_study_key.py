"""What an interrupted `cv hr` study must have been run with to be resumed: the key its
progress is kept under names every setting a model's training depends on."""

import jax
import pytest

from wearjax.data.synthetic import simulate_cohort
from wearjax.errors import WearjaxError
from wearjax.tasks.hr import HRStudyConfig
from wearjax.tasks.hr_study import _Progress


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(seed=104), "seed"),  # until 2026-12-07 not in the key
        (dict(crps_weight=0.5), "losses"),
        (dict(generative_weight=0.0), "losses"),
    ],
)
def test_resume_refuses_another_seed_or_loss_weight_whose_folds_come_out_the_same(
    change, named, tmp_path
):
    cohort = simulate_cohort(jax.random.key(0), n_runners=3, sessions_per_runner=1,
                             min_minutes=5.0, max_minutes=6.0, bucket=60)  # fmt: skip
    config = HRStudyConfig(models=(("kalman", 8, 1),), runners_out=1)
    results = {"config": {"window": 60}, "folds": {"n_folds": 3}, "cohort": {"features": []}}
    labels = ["kalman_8x1"]
    _Progress(tmp_path, False, cohort, results, labels, config)  # a study starts, is stopped
    _Progress(tmp_path, True, cohort, results, labels, config)  # the same settings resume
    with pytest.raises(WearjaxError, match=rf"ran with other {named}; run it with the same"):
        _Progress(tmp_path, True, cohort, results, labels, config._replace(**change))

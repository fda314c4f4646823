"""An interrupted HR study (`cv hr`) resumes where it stopped: the models it finished are read
back, the one in training continues from its last epoch, and the results equal an
uninterrupted study's to the last bit."""

import jax
import numpy as np
import pytest

import wearjax.cv
from wearjax.data.synthetic import simulate_cohort
from wearjax.errors import TrainingInterrupted, WearjaxError
from wearjax.tasks import study_state
from wearjax.tasks.hr import HRStudyConfig
from wearjax.tasks.hr_personal import PersonalConfig
from wearjax.tasks.hr_study import run_hr_study
from wearjax.train.loop import TrainConfig

pytestmark = pytest.mark.slow  # three small studies: 2-7 min on 2 cores


def _without_timings(tree):
    if isinstance(tree, dict):
        return {k: _without_timings(v) for k, v in tree.items() if "second" not in k}
    return tree


@pytest.fixture(scope="module")
def study():
    cohort = simulate_cohort(
        jax.random.key(5), n_runners=4, sessions_per_runner=1, min_minutes=5, max_minutes=6
    )
    config = HRStudyConfig(
        models=(("kalman", 8, 1), ("ode", 8, 1)),
        personal=PersonalConfig(train=PersonalConfig().train._replace(epochs=2)),
        train=TrainConfig(epochs=4, steps_per_epoch=2, early_stopping_patience=10),
        batch_size=2,
        runners_out=1,
        seed=2,
    )
    return cohort, config


def test_an_interrupted_study_resumes_to_the_same_results(study, tmp_path, monkeypatch):
    cohort, config = study
    whole, whole_pred = run_hr_study(cohort, config, progress=False, ahead=False)

    calls = []
    train_epochs = wearjax.cv.train_epochs

    def interrupt_the_second_model(epoch_fn, *args, **kw):
        calls.append(kw.get("state_file"))
        if len(calls) < 2:
            return train_epochs(epoch_fn, *args, **kw)
        done = []

        def epoch(*a):  # Ctrl-C while the second model runs its third epoch
            done.append(1)
            if len(done) == 3:
                raise KeyboardInterrupt
            return epoch_fn(*a)

        return train_epochs(epoch, *args, **kw)

    out = tmp_path / "study"
    monkeypatch.setattr(wearjax.cv, "train_epochs", interrupt_the_second_model)
    with pytest.raises(TrainingInterrupted, match="after epoch 2"):
        run_hr_study(cohort, config, progress=False, ahead=False, out=out)
    monkeypatch.undo()
    assert calls[1] == out / "partial_ode_8x1.state" and calls[1].exists()
    assert study_state.exists(out)

    with pytest.raises(WearjaxError, match="holds an interrupted cv hr study"):
        run_hr_study(cohort, config, progress=False, out=out)  # never overwritten silently
    other = config._replace(train=config.train._replace(epochs=5))
    with pytest.raises(WearjaxError, match="ran with other config"):
        run_hr_study(cohort, other, progress=False, out=out, resume=True)

    resumed, resumed_pred = run_hr_study(cohort, config, progress=False, out=out, resume=True)
    assert list(resumed["models"]) == list(whole["models"])
    assert _without_timings(resumed) == _without_timings(whole)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed_pred, whole_pred)
    assert not (out / "partial_ode_8x1.state").exists()  # a finished model's state is dropped
    study_state.clear(out)
    assert not list(out.glob("partial*"))

"""Tasks: each model family's data-to-arrays, `Task` functions, information settings,
baselines and tables, run through the one trainer and cross-validation runner.

- `hr`: HR during running (Kalman, ODE; the personalised ODE as a peer kind, `hr_personal`),
  standard and generative protocols; `hr_recordings`: a user's files; `hr_fit`: one model
  trained on them, and its predictions;
- `vo2`: VO2 from the first second of VO2; `vo2_chain`: HR -> VO2 in one program;
- `presets`: named settings; `commands`: the command line of every task.
"""

from wearjax.tasks.hr import HR_MODELS, HRStudyConfig
from wearjax.tasks.hr_fit import predict_hr, train_hr
from wearjax.tasks.hr_personal import PersonalConfig, PersonalResult
from wearjax.tasks.hr_recordings import cv_cohort, read_recordings, shared_channels
from wearjax.tasks.hr_study import run_hr_study, run_personal_study
from wearjax.tasks.vo2 import VO2StudyConfig, run_vo2_study
from wearjax.tasks.vo2_chain import HRToVO2Config, hr_to_vo2, run_hr_to_vo2

__all__ = [
    "HR_MODELS",
    "HRStudyConfig",
    "HRToVO2Config",
    "PersonalConfig",
    "PersonalResult",
    "VO2StudyConfig",
    "cv_cohort",
    "hr_to_vo2",
    "predict_hr",
    "read_recordings",
    "run_hr_study",
    "run_hr_to_vo2",
    "run_personal_study",
    "run_vo2_study",
    "shared_channels",
    "train_hr",
]

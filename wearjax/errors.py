"""wearjax's exceptions: each names the file or field at fault and the fix."""


class WearjaxError(Exception):
    """Base class of every error wearjax raises on purpose."""


class WearjaxDataError(WearjaxError, ValueError):
    """Input data that cannot be used as given: wrong shape, NaN, unknown unit, too short."""


class WearjaxFileError(WearjaxDataError):
    """A file or folder that cannot be read as recordings.

    `path` is the file (or folder) at fault, `problem` what is wrong with it and `fix` what to do;
    the message joins the three.
    """

    def __init__(self, path, problem: str, fix: str):
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}; {fix}")

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.fix)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the state of the last finished epoch was saved; the
    message says where and how to resume."""

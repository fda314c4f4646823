"""wearjax's exceptions: each names the file or field at fault and the fix."""


class WearjaxError(Exception):
    """Base class of every error wearjax raises on purpose."""


class WearjaxDataError(WearjaxError, ValueError):
    """Input data that cannot be used as given: wrong shape, NaN, unknown unit, too short."""

"""Ctrl-C during training with a state file: the interrupt waits for the running epoch."""

from __future__ import annotations

import signal
import threading


def defer_ctrl_c():
    """While training with a state file, a first Ctrl-C (SIGINT) only sets a flag that the
    loop reads after the running epoch, so the interrupt never lands inside a library call or
    a finaliser (where Python would swallow it); a second one interrupts at once. Returns a
    callable that restores the previous handler, with its `requested` flag; None off the main
    thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if restore.requested:
            raise KeyboardInterrupt
        restore.requested = True

    def restore():
        signal.signal(signal.SIGINT, previous)

    restore.requested = False
    signal.signal(signal.SIGINT, handler)
    return restore

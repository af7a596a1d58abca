"""The word an action gives a helper it started ahead of time: a pipe whose write end the
action holds. The helper waits for "1"; a "no", or the action's end (or death) without a
word, closes the pipe and sends the helper away: a helper never acts for an action that
failed.
"""

import os


def went(go: int, seconds: float) -> bool:
    """In a helper an action started ahead: wait up to seconds for the action's go; False
    when the action said no, or ended (or died) without a word."""
    import select
    poller = select.poll()
    poller.register(go, select.POLLIN)
    return bool(poller.poll(int(seconds * 1000))) and os.read(go, 1) == b"1"


def give_go(fd: int, go: bool) -> None:
    """The action's word to its helper (see went), once. Never fails: a helper gone has
    nothing left to do."""
    try:
        if go:
            os.write(fd, b"1")
    except OSError:
        pass
    finally:
        os.close(fd)

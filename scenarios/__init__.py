"""The locustfiles: one per delivery mode, for ``locust -f`` by hand and for deliverybench's own runs.

A package only so that an installed deliverybench carries them (``pip install``
puts them in site-packages beside ``deliverybench``). Locust's ``-f`` takes
file paths, never module names, so :func:`locustfile` answers where a mode's
file is -- ``deliverybench locustfile push`` prints it for a shell::

    locust -f "$(deliverybench locustfile push)" --headless -u 500 -r 250 --rate 5

Importing this package imports no locustfile: each one imports Locust, which
patches the whole process with gevent.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LOCUSTFILES", "locustfile"]

#: each delivery mode's locustfile, in this folder
LOCUSTFILES: dict[str, str] = {
    "push": "ws_push.py",
    "sse": "sse.py",
    "longpoll": "longpoll.py",
    "callback": "webhook_callback.py",
    "poll": "poll.py",
    "burst": "webhook_burst.py",
}


def locustfile(mode: str) -> Path:
    """The absolute path of ``mode``'s locustfile, wherever this package was imported from.

    Raises:
        KeyError: ``mode`` is not one of :data:`LOCUSTFILES`.
    """
    return Path(__file__).resolve().parent / LOCUSTFILES[mode]

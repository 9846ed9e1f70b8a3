"""Small fixes for NNI 3.0's resume path, applied to one engine, never to NNI's files.

On ``resume`` NNI's manager replays commands that the NAS tuner channel does not know
(``ImportData``, ``AddCustomizedTrialJob``): it raises "Unknown command type" in its
listener thread and the strategy then waits forever. :func:`skip_unknown_commands` makes
the channel of one engine skip them (they concern HPO tuners, not NAS strategies).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

_logger = logging.getLogger(__name__)


UNKNOWN_COMMAND = "Unknown command type"


def tolerant_receive(receive: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a channel's ``receive`` so commands it does not know are skipped, not fatal."""

    def receive_skipping_unknown() -> Any:
        while True:
            try:
                return receive()
            except ValueError as error:
                if not str(error).startswith(UNKNOWN_COMMAND):
                    raise
                _logger.debug("skipped a command the NAS channel does not handle: %s", error)

    return receive_skipping_unknown


def skip_unknown_commands(engine: Any) -> bool:
    """Patch the tuner channel of a training-service ``engine``; returns whether it had one."""
    channel = getattr(engine, "_channel", None)
    if channel is None or not hasattr(channel, "receive"):
        return False
    if getattr(channel.receive, "__name__", "") != "receive_skipping_unknown":
        channel.receive = tolerant_receive(channel.receive)
    return True

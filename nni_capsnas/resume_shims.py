"""Small fixes for NNI 3.0's resume path, applied to one engine, never to NNI's files.

On ``resume`` NNI's manager replays an ``ImportData`` command that the NAS tuner channel
does not know: it raises "Unknown command type" in its listener thread and the strategy
then waits forever. :func:`skip_import_data` makes the channel of one engine skip it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

_logger = logging.getLogger(__name__)


def tolerant_receive(receive: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a channel's ``receive`` so ``ImportData`` commands are skipped, not fatal."""

    def receive_skipping_import_data() -> Any:
        while True:
            try:
                return receive()
            except ValueError as error:
                if "ImportData" not in str(error):
                    raise
                _logger.debug("skipped an ImportData command replayed by NNI on resume")

    return receive_skipping_import_data


def skip_import_data(engine: Any) -> bool:
    """Patch the tuner channel of a training-service ``engine``; returns whether it had one."""
    channel = getattr(engine, "_channel", None)
    if channel is None or not hasattr(channel, "receive"):
        return False
    if getattr(channel.receive, "__name__", "") != "receive_skipping_import_data":
        channel.receive = tolerant_receive(channel.receive)
    return True

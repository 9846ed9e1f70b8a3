"""Stop an NNI manager without NNI's ``stop()`` (private ``_stop_nni_manager``, ``_proc``).

``Experiment.stop()`` also rewrites the saved configuration and checkpoint; a manager started
only to *view* a finished experiment must leave them alone. NNI's ``_stop_nni_manager`` stops
just the manager process.
"""

from __future__ import annotations

from typing import Any


def stop_manager_only(experiment: Any) -> None:
    """Stop the experiment's node.js manager; kill it if it is still running afterwards."""
    process = getattr(experiment, "_proc", None)
    try:
        experiment._stop_nni_manager()
    finally:
        if process is not None and process.poll() is None:
            process.kill()

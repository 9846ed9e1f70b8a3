"""Bind NNI's web UI / REST server to one host (127.0.0.1 by default)."""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from typing import Iterator

BIND_SCRIPT = "bind_host.js"


def bind_script_path() -> str:
    """Path of the node.js preload that gives ``listen`` a default host."""
    return str(resources.files("nni_capsnas") / "node" / BIND_SCRIPT)


@contextlib.contextmanager
def bind_webui(host: str = "127.0.0.1") -> Iterator[None]:
    """Within this context, NNI managers started by this process listen on ``host`` only.

    ``host="0.0.0.0"`` (or ``""``) keeps NNI's behaviour of listening everywhere (needed
    when remote workers must reach the manager).
    """
    if host in ("", "0.0.0.0", "::"):
        yield
        return
    saved = {name: os.environ.get(name) for name in ("NODE_OPTIONS", "NNI_CAPSNAS_BIND_HOST")}
    preload = f"--require {bind_script_path()}"
    os.environ["NODE_OPTIONS"] = f"{saved['NODE_OPTIONS']} {preload}".strip() if saved["NODE_OPTIONS"] else preload
    os.environ["NNI_CAPSNAS_BIND_HOST"] = host
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

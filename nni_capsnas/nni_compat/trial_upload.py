"""What NNI's remote training service would upload, counted with NNI's own node.js rules.

NNI packs the trial code directory (``nni_node/common/tarball.js``, honouring ``.nniignore``)
and refuses more than 2000 files or 300 MB; a refused upload leaves the search waiting for
workers forever with no error. ``node/upload_size.js`` runs NNI's ignore rules through NNI's
bundled node and ``node_modules`` (private to the ``nni_node`` package) to count first.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

import nni_node

_logger = logging.getLogger(__name__)

#: NNI's limits for the packed trial code directory (``nni_node/common/tarball.js``).
UPLOAD_MAX_FILES = 2000
UPLOAD_MAX_BYTES = 300 * 1024 * 1024


@dataclass
class UploadSize:
    """What NNI would pack from a trial code directory (counting stops past the file limit)."""

    files: int
    bytes: int
    complete: bool
    top: dict[str, int] = field(default_factory=dict)

    def largest(self, count: int = 3) -> str:
        """The top-level entries holding the most files, e.g. ``.venv (1681 files), .git (256 files)``."""
        ranked = sorted(self.top.items(), key=lambda item: -item[1])[:count]
        return ", ".join(f"{name} ({files} files)" for name, files in ranked)


def upload_size(directory: Path) -> Optional[UploadSize]:
    """Count what NNI would upload from ``directory``, with NNI's node.js and ignore rules.

    Returns ``None`` (and logs why) when NNI's node.js cannot be run.
    """
    node_dir = Path(nni_node.__path__[0])
    node = node_dir / ("node.exe" if os.name == "nt" else "node")
    script = resources.files("nni_capsnas.nni_compat") / "node" / "upload_size.js"
    environment = {**os.environ, "NODE_PATH": str(node_dir / "node_modules")}
    environment.pop("NODE_OPTIONS", None)
    try:
        result = subprocess.run([str(node), str(script), str(directory), str(UPLOAD_MAX_FILES)],
                                capture_output=True, text=True, env=environment, timeout=120, check=True)
        raw = json.loads(result.stdout)
        return UploadSize(int(raw["files"]), int(raw["bytes"]), bool(raw["complete"]), dict(raw["top"]))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as error:
        _logger.warning("could not count the trial code NNI will upload from %s: %s", directory,
                        " ".join(str(error).split())[:300])
        return None

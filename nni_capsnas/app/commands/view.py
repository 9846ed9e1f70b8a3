"""``nni-capsnas view EXP_ID``: open a finished NAS experiment in NNI's web UI.

``nnictl view`` fails for NAS experiments ("search_space field can not be customized");
re-creating the NAS experiment from its saved config works.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path

from nni_capsnas.app.commands import print_now


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("view", help="open a finished experiment in NNI's web UI",
                                   description="Serve NNI's web UI for a stopped NAS experiment until Ctrl-C.")
    parser.add_argument("experiment", help="experiment id (or its folder)")
    parser.add_argument("--workdir", help="NNI experiments folder (default ~/nni-experiments)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    parser.add_argument("--seconds", type=float, help="stop serving after this many seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import nni
    from nni.nas.experiment import NasExperiment
    from nni.nas.experiment.config import NasExperimentConfig

    from nni_capsnas.nni_compat.console_log import route_nni_logs_to_root
    from nni_capsnas.nni_compat.experiment_db import locate_experiment
    from nni_capsnas.nni_compat.manager import stop_manager_only
    from nni_capsnas.nni_compat.node_preloads import EVERY_INTERFACE, bind_webui

    route_nni_logs_to_root()

    folder = locate_experiment(args.experiment, args.workdir)
    config_path = folder.checkpoint / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: not a NAS experiment folder")
    with config_path.open(encoding="utf-8") as handle:
        raw = nni.load(fp=handle)
    # NNI insists that a NAS experiment's trial code directory is the current directory.
    code_dir = Path(raw.get("trialCodeDirectory", "."))
    previous_cwd = Path.cwd()
    os.chdir(code_dir if code_dir.is_dir() else previous_cwd)
    stop_requested = threading.Event()
    # SIGTERM only asks to stop: a signal in the middle of NNI's start-up would leave its
    # web server running with nobody to stop it.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())
    try:
        raw["trialCodeDirectory"] = str(Path.cwd())
        raw.get("trainingService", {})["trialCodeDirectory"] = str(Path.cwd())
        config = NasExperimentConfig(**raw)
        config.experiment_working_directory = str(folder.path.parent)
        experiment = NasExperiment(None, None, None, config=config, id=folder.experiment_id)
        logging.getLogger("nni").setLevel(logging.CRITICAL)
        try:
            with bind_webui(args.host):
                experiment.view(port=args.port, non_blocking=True)
            shown = "127.0.0.1" if args.host in EVERY_INTERFACE else args.host
            print_now(f"web UI: http://{shown}:{args.port}  (experiment {folder.experiment_id}; Ctrl-C to stop)")
            _serve(args.seconds, stop_requested)
        except KeyboardInterrupt:
            pass
        finally:
            # NNI's stop() would also rewrite the saved configuration: stop the viewing manager only
            stop_manager_only(experiment)
    finally:
        os.chdir(previous_cwd)
    return 0


def _serve(seconds: float | None, stop_requested: threading.Event) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    while not stop_requested.is_set() and (deadline is None or time.monotonic() < deadline):
        stop_requested.wait(0.5)

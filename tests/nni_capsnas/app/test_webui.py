"""NNI's web UI of a finished search, served by ``nni-capsnas view``, in headless Chromium.

A two-trial search runs first (subprocess, NNI files under a temporary HOME). The viewer must
listen on 127.0.0.1 only and print that address; Chromium (``--headless``, driven through its
DevTools protocol so the test can click) opens the trial table, whose "Add/Remove columns"
dialog must offer the hardware metrics; once added, the table shows the values the trials
reported. The screenshot is kept under the test's folder (and copied to ``docs/webui.png``
when ``NNI_CAPSNAS_UPDATE_DOCS=1``).

Chromium comes from ``scripts/test.sh`` (``apt-get install chromium``); ``NNI_CAPSNAS_CHROMIUM``
names another binary.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
import yaml

from nni_capsnas.nni_compat.experiment_db import locate_experiment, read_trials

REPO_ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("NNI_CAPSNAS_CHROMIUM", "/usr/bin/chromium")
HEADLESS_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1500,760"]
HARDWARE_METRICS = ("energy_mj", "latency_ms", "memory_kib")
SPACE = {"stem_channels": [8], "primary_caps": [2, 4], "primary_dim": [4], "primary_kernel": [3],
         "iterations": [1], "decoder": False}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_group(process: subprocess.Popen) -> None:
    """Stop ``process`` and its session's other processes (SIGTERM, then SIGKILL)."""
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


class Chromium:
    """Headless Chromium with one page, driven through the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh (installs chromium) or set NNI_CAPSNAS_CHROMIUM")
        self.process = subprocess.Popen(
            [CHROMIUM, *HEADLESS_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail("headless Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            page = next(target for target in json.load(reply) if target["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=2 ** 26, open_timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for: {expression}")

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        _kill_group(self.process)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A finished two-trial search, served by ``nni-capsnas view`` until the module ends."""
    root = tmp_path_factory.mktemp("webui")
    env = {**os.environ, "HOME": str(root / "home"), "OMP_NUM_THREADS": "1"}
    (root / "home").mkdir()
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": {"max_trials": 2, "trial_concurrency": 2, "port": _free_port(), "workdir": str(root)},
        "dataset": {"name": "digits"}, "space": {"name": "capsnet", "options": SPACE},
        "training": {"epochs": 1}, "strategy": {"name": "nsga2", "population_size": 2, "seed": 1},
    }))
    search = subprocess.run([sys.executable, "-m", "nni_capsnas", "search", "--config", str(config)], env=env,
                            capture_output=True, text=True, timeout=600, start_new_session=True)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    experiment_id = search.stdout.split("(experiment ")[1].split(")")[0]
    trials = read_trials(locate_experiment(experiment_id, root))
    port = _free_port()
    viewer = subprocess.Popen([sys.executable, "-m", "nni_capsnas", "view", experiment_id, "--workdir", str(root),
                               "--port", str(port), "--seconds", "300"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        banner = ""
        for _ in range(500):
            banner = viewer.stdout.readline()
            if banner.startswith("web UI: ") or not banner:
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/check-status", timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        yield {"root": root, "port": port, "banner": banner, "trials": trials, "experiment_id": experiment_id}
    finally:
        _kill_group(viewer)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the viewer left its web server running"


def _listening_addresses(port: int) -> set[str]:
    return {connection.laddr.ip for connection in psutil.net_connections(kind="tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port}


def test_viewer_prints_the_loopback_address_and_listens_there_only(served: dict[str, Any]) -> None:
    assert served["banner"].startswith(f"web UI: http://127.0.0.1:{served['port']}  "), served["banner"]
    assert _listening_addresses(served["port"]) == {"127.0.0.1"}
    other = [address.address for addresses in psutil.net_if_addrs().values() for address in addresses
             if address.family == socket.AF_INET and not address.address.startswith("127.")]
    for address in other:  # the port is closed on every other interface
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex((address, served["port"])) != 0, address


def test_trial_table_offers_the_hardware_metrics(served: dict[str, Any], tmp_path: Path) -> None:
    browser = Chromium(tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{served['port']}/detail")
        browser.wait_for("document.body && document.body.innerText.includes('SUCCEEDED')")
        browser.evaluate("[...document.querySelectorAll('button')]"
                         ".find(b => b.innerText.includes('Add/Remove columns')).click()")
        labels = browser.wait_for("(() => { const found = [...document.querySelectorAll('.ms-Dialog .ms-Checkbox')]"
                                  ".map(c => c.innerText.trim()); return found.length ? found : null })()")
        offered = {label.split("\n")[-1] for label in labels}
        for metric in HARDWARE_METRICS:
            assert f"{metric} (metric)" in offered, offered
        # show the hardware metrics (and hide the duration, to make room for them)
        browser.evaluate("""[...document.querySelectorAll('.ms-Dialog .ms-Checkbox')].forEach(box => {
            const checked = box.classList.contains('is-checked');
            const hardware = /^(energy_mj|latency_ms|memory_kib) \\(metric\\)$/m.test(box.innerText);
            const duration = /^Duration$/m.test(box.innerText);
            if ((hardware && !checked) || (duration && checked)) box.querySelector('input').click();
        })""")
        browser.evaluate("[...document.querySelectorAll('.ms-Dialog button')]"
                         ".find(b => b.innerText.trim() === 'Save').click()")
        headers = browser.wait_for("(() => { const h = [...document.querySelectorAll('.ms-DetailsHeader-cellName')]"
                                   ".map(c => c.innerText.trim()); return h.some(t => t.startsWith('energy_mj'))"
                                   " ? h : null })()")
        assert [f"{metric} (metric)" in headers for metric in HARDWARE_METRICS] == [True] * len(HARDWARE_METRICS)
        cells = browser.evaluate("[...document.querySelectorAll('.ms-DetailsRow')].map(r => r.innerText)")
        for energy in served["trials"]["energy_mj"]:
            assert any(f"{energy:.6g}"[:6] in cell for cell in cells), (energy, cells)

        browser.evaluate("document.querySelector('.ms-DetailsList').scrollIntoView({block: 'end'})")
        time.sleep(0.5)
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    screenshot = tmp_path / "webui.png"
    screenshot.write_bytes(shot)
    assert shot.startswith(b"\x89PNG") and 10_000 < len(shot) < 300_000, len(shot)
    if os.environ.get("NNI_CAPSNAS_UPDATE_DOCS") == "1":
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "webui.png")

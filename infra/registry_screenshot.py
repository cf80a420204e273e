"""Screenshot a bundle's model version page in the real MLflow UI, to check that it renders.

The model version page (markdown description with the gate table, tags, links to runs) is what a
reviewer reads before promoting a bundle. Unit tests see only the strings we send to MLflow; this
script looks at what the MLflow UI makes of them. It starts `mlflow server` on the store (view
only: job execution, artifact serving and telemetry off, on a free localhost port), asks its REST
API for the version (named, else the one with alias `champion`, else the newest), drives headless
Chromium over the DevTools protocol until the page shows the heading and the description's words,
and saves a PNG. It fails, naming what is missing, when the model or version does not exist or the
page never shows them (the screenshot is still written then, to see what the UI showed instead).
The last stdout line is JSON: {"url", "screenshot", "version", "seconds"}. Both servers are
stopped in all cases.

Needs Chromium (Debian: `apt-get install -y chromium`) and `websockets` (already pinned in
requirements.lock, through prefect). No network access is needed.

    .venv/bin/python infra/registry_screenshot.py                 # champion of ragops-assistant
    .venv/bin/python infra/registry_screenshot.py --version 2 --out /tmp/v2.png
    .venv/bin/python infra/registry_screenshot.py --trace tr-...  # a served answer's trace and its feedback
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
SERVER_TIMEOUT_S = 120.0
BROWSER_TIMEOUT_S = 30.0
RENDER_TIMEOUT_S = 60.0
# On the first visit to a localhost server the UI opens its "MLflow Assistant" panel over a third
# of the page. Its useLocalStorage hook stores `<key>_v<version>` as JSON: mark it shown and closed.
QUIET_UI_JS = (
    "try { localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
    " localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); } catch (e) {}"
)


class ScreenshotError(RuntimeError):
    """A failure with a message meant for the person running the script."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default="sqlite:///.ragops/mlflow.db",
                        help="backend store URI to serve (default: %(default)s)")
    parser.add_argument("--model", default="ragops-assistant", help="registered model (default: %(default)s)")
    parser.add_argument("--version", help="model version (default: alias `champion`, else the newest)")
    parser.add_argument("--trace", help="screenshot this answer's trace (its spans and feedback) instead of a version")
    parser.add_argument("--out", type=Path, help="PNG path (default: .ragops/screenshots/<model>-v<version>.png, "
                                                 "or <trace>.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--chromium", help=f"browser binary (default: first of {', '.join(CHROMIUM_CANDIDATES)})")
    return parser.parse_args(argv)


def find_chromium(explicit: str | None) -> str:
    for candidate in [explicit] if explicit else CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    tried = explicit or ", ".join(CHROMIUM_CANDIDATES)
    raise ScreenshotError(f"Chromium not found (tried {tried}); install it with `apt-get install -y chromium`")


def absolute_store_uri(uri: str) -> str:
    """sqlite:///relative.db → sqlite:////abs/relative.db, refusing a missing file (the server would create it)."""
    if not uri.startswith("sqlite:///"):
        return uri
    path = Path(uri.removeprefix("sqlite:///")).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        raise ScreenshotError(f"no MLflow store at {path} (from --tracking-uri {uri}); run the pipeline first")
    return f"sqlite:///{path.resolve()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@contextmanager
def process_group(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run cmd in its own session (it spawns workers) and stop the whole group on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def mlflow_server(store_uri: str, workdir: Path) -> Iterator[str]:
    """A view-only MLflow server on a free port; yields its base URL once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-serve-artifacts"]
    # Job execution would start seven huey consumers and periodic tasks that write to the store.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    log = workdir / "mlflow-server.log"
    base = f"http://127.0.0.1:{port}"
    with process_group(cmd, log, cwd=workdir, env=env) as proc:  # cwd: nothing lands in the repo
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise ScreenshotError(f"mlflow server exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ScreenshotError(f"mlflow server did not answer {base}/health in {SERVER_TIMEOUT_S:.0f} s:\n{log_tail(log)}")
            time.sleep(0.5)
        yield base


def api_get(base: str, endpoint: str, **params: str) -> dict[str, Any] | None:
    """GET /api/2.0/mlflow/<endpoint>; None when MLflow says the resource does not exist."""
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        if err.code == 404 and "RESOURCE_DOES_NOT_EXIST" in body:
            return None
        raise ScreenshotError(f"GET {url} failed with HTTP {err.code}: {body[:500]}") from err


def resolve_version(base: str, model: str, version: str | None) -> dict[str, Any]:
    """The model version as the REST API returns it; errors name the missing model or version."""
    registered = api_get(base, "registered-models/get", name=model)
    if registered is None:
        found = api_get(base, "registered-models/search", max_results="100") or {}
        names = ", ".join(m["name"] for m in found.get("registered_models", [])) or "none"
        raise ScreenshotError(f"registered model {model!r} not found; registered models: {names}")
    if version is None:
        aliases = {a["alias"]: a["version"] for a in registered["registered_model"].get("aliases", [])}
        latest = [v["version"] for v in registered["registered_model"].get("latest_versions", [])]
        if not aliases.get("champion") and not latest:
            raise ScreenshotError(f"registered model {model!r} has no versions")
        version = aliases.get("champion") or max(latest, key=int)  # latest per stage: the newest is among them
    found = api_get(base, "model-versions/get", name=model, version=version)
    if found is None:
        listed = api_get(base, "model-versions/search", filter=f"name='{model}'", max_results="1000") or {}
        versions = ", ".join(sorted((v["version"] for v in listed.get("model_versions", [])), key=int)) or "none"
        raise ScreenshotError(f"version {version} of registered model {model!r} not found; its versions: {versions}")
    return found["model_version"]


def page_url(base: str, model: str, version: str) -> str:
    """The UI's route for a model version (a hash router; see Routes.getModelVersionPageRoute)."""
    return f"{base}/#/models/{urllib.parse.quote(model, safe='')}/versions/{version}"


def trace_page(base: str, store_uri: str, trace_id: str) -> tuple[str, list[str]]:
    """The UI's route for a trace (the experiment's Traces tab with it open) and the text it must
    show: the question's first words, the spans, and the names of its feedback."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        trace = MlflowClient(store_uri).get_trace(trace_id)
    except MlflowException as err:
        raise ScreenshotError(f"no trace {trace_id!r} in {store_uri}: {err.message}") from err
    question = next(s.inputs["question"] for s in trace.data.spans if s.parent_id is None)
    words = re.findall(r"[A-Za-z][A-Za-z0-9]{3,}", question)[:3]
    names = sorted({s.name for s in trace.data.spans} | {a.name for a in trace.info.assessments or []})
    url = f"{base}/#/experiments/{trace.info.experiment_id}/traces?traceId={trace_id}"
    return url, [*words, *names]


def expected_texts(model_version: dict[str, Any]) -> list[str]:
    """Text the rendered page must contain: the heading, the description's first words, the tag names."""
    description = model_version.get("description", "")
    visible = re.sub(r"\]\([^)]*\)|<[^>]+>|https?://\S+", " ", description)  # link targets are not shown
    words = re.findall(r"[A-Za-z][A-Za-z0-9]{3,}", visible)[:3]  # no _: it may be markdown emphasis
    tags = [t["key"] for t in model_version.get("tags", []) if not t["key"].startswith("mlflow.")]
    return [f"Version {model_version['version']}", *words, *tags]


class DevTools:
    """The few Chrome DevTools protocol calls needed, over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        try:
            from websockets.sync.client import connect
        except ImportError as err:
            raise ScreenshotError("the `websockets` package is missing from this venv (requirements.lock pins it)") from err
        self._ws = connect(ws_url, max_size=None, open_timeout=BROWSER_TIMEOUT_S)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # skip events (Page.enable sends them): they have no id
            message = json.loads(self._ws.recv(timeout=RENDER_TIMEOUT_S))
            if message.get("id") == self._id:
                if "error" in message:
                    raise ScreenshotError(f"DevTools {method} failed: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def close(self) -> None:
        self._ws.close()


def devtools_page(profile: Path, browser: subprocess.Popen[bytes], log: Path) -> str:
    """The websocket URL of the browser's first page, once Chromium has written DevToolsActivePort."""
    deadline = time.monotonic() + BROWSER_TIMEOUT_S
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise ScreenshotError(f"Chromium exited with {browser.returncode}:\n{log_tail(log)}")
        active = profile / "DevToolsActivePort"
        lines = active.read_text().split() if active.exists() else []
        if lines:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{lines[0]}/json/list", timeout=2) as response:
                    pages = [t for t in json.load(response) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
        time.sleep(0.2)
    raise ScreenshotError(f"Chromium's DevTools endpoint did not come up in {BROWSER_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


# The trace view keeps a trace's feedback behind its "Assess" button: open that panel.
OPEN_ASSESSMENTS_JS = ("[...document.querySelectorAll('button')].find(b => b.innerText.trim().startsWith('Assess'))"
                       "?.click()")


def capture(chromium: str, url: str, out: Path, width: int, height: int, texts: list[str], workdir: Path,
            then_js: str = "") -> None:
    """Load url in headless Chromium, wait until all texts are on the page (running `then_js` once
    they are), and save a PNG to out."""
    profile = workdir / "chromium-profile"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},{height}",
           "--remote-debugging-port=0", "about:blank"]
    log = workdir / "chromium.log"
    with process_group(cmd, log, cwd=workdir) as browser:
        page = DevTools(devtools_page(profile, browser, log))
        try:
            page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            page.call("Page.enable")  # without it the script below does not run on the next document
            page.call("Page.addScriptToEvaluateOnNewDocument", source=QUIET_UI_JS)
            page.call("Page.navigate", url=url)
            probe = f"{json.dumps(texts)}.filter(s => !(document.body?.innerText ?? '').includes(s))"
            deadline = time.monotonic() + RENDER_TIMEOUT_S
            while True:
                missing = page.evaluate(probe)
                missing = missing if isinstance(missing, list) else texts  # no value: the page is not there yet
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            if not missing:  # let fonts load and the layout settle after the last data arrives
                if then_js:
                    page.evaluate(then_js)
                page.evaluate("document.fonts.ready.then(() => new Promise(r => setTimeout(r, 1000)))")
            shot = page.call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            if missing:
                shown = (page.evaluate("document.body ? document.body.innerText : ''") or "")[:600]
                raise ScreenshotError(f"after {RENDER_TIMEOUT_S:.0f} s {url} does not show {missing} "
                                      f"(screenshot of what it shows: {out}); page text:\n{shown}")
        finally:
            page.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        chromium = find_chromium(args.chromium)
        store_uri = absolute_store_uri(args.tracking_uri)
        with tempfile.TemporaryDirectory(prefix="ragops-screenshot-", ignore_cleanup_errors=True) as tmp:
            workdir = Path(tmp)
            with mlflow_server(store_uri, workdir) as base:
                then_js = ""
                if args.trace:
                    version, then_js = "", OPEN_ASSESSMENTS_JS
                    url, texts = trace_page(base, store_uri, args.trace)
                    out = args.out or Path(".ragops/screenshots") / f"{args.trace}.png"
                else:
                    model_version = resolve_version(base, args.model, args.version)
                    version = str(model_version["version"])
                    url, texts = page_url(base, args.model, version), expected_texts(model_version)
                    out = args.out or Path(".ragops/screenshots") / f"{args.model}-v{version}.png"
                print(f"registry_screenshot: {url} -> {out}", file=sys.stderr, flush=True)
                capture(chromium, url, out, args.width, args.height, texts, workdir, then_js)
    except ScreenshotError as err:
        print(f"registry_screenshot: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"url": url, "screenshot": str(out), "version": version,
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The champion bundle behind `ragops serve`: loaded, swapped when the alias moves, unloaded when idle.

A background thread asks the registry where the `champion` alias points. A new version is loaded
completely (the pyfunc and a one-question warm-up) while the current one keeps answering, then
swapped in one step; the old one is unloaded once the request running on it has finished. A failed
load leaves the current bundle serving, is logged, and is tried again at the next poll.

    >>> holder = ChampionHolder("ragops-assistant", configure_mlflow(Settings()))  # doctest: +SKIP
    >>> with champion_reloader(holder, poll_seconds=10):  # doctest: +SKIP
    ...     version, answers = holder.call(lambda assistant: assistant.answer(["How much is the kettle?"]))
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from components.index.shared_server import shared_weaviate
from components.registry.tracking import get_alias_version
from components.settings import Settings

log = logging.getLogger("ragops.serve")
T = TypeVar("T")

# Asked once of every bundle before it takes traffic: the first call allocates (tokenizer caches,
# torch kernels) and would otherwise land on a customer.
WARMUP_QUESTION = "How much does the kettle cost?"


class NotReady(RuntimeError):
    """No champion bundle is loaded; the message says why and what to do."""


@dataclass
class LoadedBundle:
    name: str
    version: str
    model: Any  # components.assistant.BundleModel
    loaded_at: datetime
    in_flight: int = 0
    retired: bool = False
    shares_models: bool = False  # loaded on the models of the bundle it replaced (load_bundle)

    @property
    def assistant(self) -> Any:  # components.assistant.Assistant
        return self.model.assistant

    @property
    def collection(self) -> str:
        return self.assistant.manifest.collection

    def unload(self) -> None:
        self.model.unload()
        self.model = None
        gc.collect()  # the models are large; give their memory back now rather than at some later collection


def load_bundle(name: str, version: str, current: LoadedBundle | None = None) -> LoadedBundle:
    """`models:/<name>/<version>` loaded (ragops' code, the version's data: components/registry/loading.py)
    and asked one question, ready for traffic. A version on the models `current` already has loaded
    (a reindex: same router, generator and encoder, a new index version) shares them instead: only
    its manifest is read, so it is ready in about a second instead of after a full load."""
    from components.registry.loading import load_registered, registered_manifest
    from components.registry.pyfunc import serves_same_models

    if current is not None and current.model is not None:
        manifest = registered_manifest(name, version)
        if serves_same_models(current.assistant.manifest, manifest):
            model = current.model.with_manifest(manifest)
            # No warm-up answer: the models are warm and answer the current bundle's requests in
            # another thread (model calls must not overlap); the new index version is checked instead.
            if not model.assistant.client.collections.exists(manifest.collection):
                model.unload()
                raise RuntimeError(f"bundle v{version}'s index version {manifest.collection} is not in Weaviate")
            return LoadedBundle(name, str(version), model, datetime.now(UTC), shares_models=True)
    model = load_registered(f"models:/{name}/{version}")
    try:
        model.assistant.answer([WARMUP_QUESTION])
    except Exception:
        model.unload()
        raise
    return LoadedBundle(name, str(version), model, datetime.now(UTC))


class ChampionHolder:
    """The bundle that answers, and the next one while it loads."""

    def __init__(self, name: str, registry: Any,
                 load: Callable[[str, str, LoadedBundle | None], LoadedBundle] = load_bundle,
                 poll_seconds: float = 10.0) -> None:
        self.name = name
        self.poll_seconds = poll_seconds
        self._registry = registry  # mlflow.MlflowClient
        self._load = load
        # Guards the fields below; held only to read or swap them, never during a model call, so
        # readiness never waits for an answer.
        self._state = threading.Lock()
        # Model calls run one at a time. Generation is CPU-bound and torch already spreads one call
        # over every core, so two calls at once only make both slower (and every answer later);
        # and a Hugging Face fast tokenizer used from two threads at once fails ("Already borrowed").
        self._model_lock = threading.Lock()
        self._current: LoadedBundle | None = None
        self._polled = False
        self._champion: str | None = None  # where the alias pointed at the last poll
        self._loading: str | None = None
        self._last_error: dict | None = None
        self._closed = False

    def status(self) -> tuple[bool, dict]:
        """(ready, what /readyz shows); never waits on a model call."""
        with self._state:
            current, error = self._current, self._last_error
            body: dict[str, Any] = {"bundle": self.name, "champion": self._champion, "loading": self._loading,
                                    "last_load_error": error}
            if current is not None:
                return True, {**body, "version": current.version, "collection": current.collection,
                              "loaded_at": current.loaded_at.isoformat(timespec="seconds")}
            return False, {**body, "error": self._not_ready_reason()}

    def _not_ready_reason(self) -> str:
        if self._loading:
            return f"loading champion v{self._loading} of {self.name}; ready when its warm-up answer is done"
        if self._last_error:
            return (f"champion v{self._last_error['version']} of {self.name} failed to load: "
                    f"{self._last_error['error']} (tried again every {self.poll_seconds:g} s)")
        if not self._polled:
            return f"starting: the champion of {self.name} has not been looked up yet"
        return f"no champion of {self.name} yet; run `ragops run` (or `ragops promote VERSION`)"

    def call(self, work: Callable[[Any], T]) -> tuple[str, T]:
        """`work(assistant)` on the current champion, one call at a time; (bundle version, result).
        Raises NotReady when no champion is loaded."""
        with self._model_lock:
            with self._state:
                bundle = self._current
                if bundle is None:
                    raise NotReady(self._not_ready_reason())
                bundle.in_flight += 1
            try:
                return bundle.version, work(bundle.assistant)
            finally:
                with self._state:
                    bundle.in_flight -= 1
                    idle_retired = bundle.retired and bundle.in_flight == 0
                if idle_retired:
                    self._unload(bundle)

    def poll(self) -> None:
        """One look at the alias; a version other than the loaded one is loaded and swapped in."""
        try:
            found = get_alias_version(self._registry, self.name, "champion")
        except Exception as exc:  # noqa: BLE001 (a registry hiccup, e.g. SQLite busy during a run, must not stop serving)
            log.warning("could not read the champion alias of %s (tried again in %g s): %s", self.name,
                        self.poll_seconds, exc)
            return
        version = str(found.version) if found is not None else None
        with self._state:
            self._polled, self._champion = True, version
            current = self._current
            if version is None or (current is not None and current.version == version) or self._closed:
                return
            self._loading = version
        tic = time.monotonic()
        try:
            new = self._load(self.name, version, current)
        except Exception as exc:  # noqa: BLE001 (a bundle that does not load must not take down the one serving)
            log.error("loading champion v%s of %s failed; %s, tried again in %g s: %s", version, self.name,
                      f"v{current.version} keeps serving" if current else "not ready", self.poll_seconds, exc,
                      exc_info=True)
            with self._state:
                self._loading = None
                # /readyz shows that it failed, not why: exception text can hold paths, URLs and
                # configuration; the log has it.
                self._last_error = {"version": version, "error": f"{type(exc).__name__} (the server log has the details)",
                                    "at": datetime.now(UTC).isoformat(timespec="seconds")}
            return
        old = self._swap(new)
        log.info("champion %sv%s loaded in %.1f s (%s%s)", f"v{old.version} → " if old else "", version,
                 time.monotonic() - tic, new.collection, ", on the models already loaded" if new.shares_models else "")

    def _swap(self, new: LoadedBundle) -> LoadedBundle | None:
        with self._state:
            if self._closed:  # shut down while it loaded
                old, idle = new, True
            else:
                old, self._current = self._current, new
                self._loading, self._last_error = None, None
                idle = old is not None and old.in_flight == 0
                if old is not None:
                    old.retired = True
        if idle:
            self._unload(old)
        return old if old is not new else None

    def _unload(self, bundle: LoadedBundle) -> None:
        version = bundle.version
        bundle.unload()
        log.info("unloaded bundle v%s", version)

    def close(self) -> None:
        """Unload the current bundle (at shutdown, after the server stopped taking requests)."""
        with self._model_lock, self._state:
            current, self._current, self._closed = self._current, None, True
        if current is not None:
            self._unload(current)


@contextlib.contextmanager
def champion_reloader(holder: ChampionHolder) -> Iterator[threading.Thread]:
    """Poll the alias every `holder.poll_seconds` in a daemon thread (the first poll at once)."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            holder.poll()
            if stop.wait(holder.poll_seconds):
                return

    thread = threading.Thread(target=loop, name="champion-reloader", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        # A load in progress is abandoned (daemon thread); ChampionHolder.close makes it unload itself.
        thread.join(timeout=5)


@contextlib.contextmanager
def bundle_weaviate(settings: Settings) -> Iterator[dict[str, str]]:
    """Point every bundle this process loads at one Weaviate server for the process lifetime.

    A bundle connects through `connect_weaviate(Settings())`; without RAGOPS_WEAVIATE_URL that is the
    local server of RAGOPS_HOME, which never runs twice on one data path. Holding it here keeps it
    (and its data) up across reloads, and the variables set for the bundles (restored on exit) make
    each of them a plain client of it."""
    if settings.weaviate_url:
        given = {"RAGOPS_WEAVIATE_URL": settings.weaviate_url, "RAGOPS_WEAVIATE_GRPC_URL": settings.weaviate_grpc_url}
        yield {key: value for key, value in given.items() if value}
        return
    with shared_weaviate(settings, settings.weaviate_data_path.parent / "weaviate.log") as server:
        env = server.env()
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

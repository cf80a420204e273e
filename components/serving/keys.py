"""API keys of `ragops serve`: who may ask, and for what.

The key file (its path in the environment, `RAGOPS_SERVE_KEYS`, never in params.yaml, which is
versioned) lists each key's name, scopes and SHA-256, never the key itself:

    keys:
      - name: web-frontend
        scopes: [answer, feedback]
        sha256: 5f1c...e2

`ragops keys add NAME --scope answer` writes an entry and prints the key once. A key is 32 random
bytes, so a plain SHA-256 is enough to store it (a slow password hash protects guessable secrets;
GitHub and PyPI store their tokens the same way). Scopes: `answer` (POST /v1/answer,
/v1/answer/batch, /v1/retrieve), `feedback` (POST /v1/feedback), `admin` (every /v1 endpoint).
The server compares a presented key's hash with every entry in constant time
(`hmac.compare_digest`, no early exit), never logs a key, and reads the file again when it
changes, so adding or removing a key needs no restart; a file that no longer parses leaves the
keys it had in force and says why in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.settings import open_private

log = logging.getLogger("ragops.serve")

SCOPES = ("answer", "feedback", "admin")
# What each /v1 endpoint needs; admin holds every scope.
ENDPOINT_SCOPES = {"/v1/answer": "answer", "/v1/answer/batch": "answer", "/v1/retrieve": "answer",
                   "/v1/feedback": "feedback"}
PREFIX = "rgo_"  # tells a ragops key apart in a config file or a leaked log
EXAMPLE = "keys:\n  - name: web-frontend\n    scopes: [answer, feedback]\n    sha256: <64 hex digits>"


class KeyFileError(ValueError):
    """A key file that cannot be used: the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Key:
    name: str
    scopes: frozenset[str]
    digest: bytes  # SHA-256 of the key


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def read_keys(path: Path) -> list[Key]:
    """The entries of a key file, checked; KeyFileError names the file, the entry and the fix."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({exc}); write it as\n{EXAMPLE}") from exc
    if data is None:
        data = {"keys": []}
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeyFileError(f"{path}: expected a mapping with a 'keys' list, like\n{EXAMPLE}")
    keys, names = [], set()
    for i, entry in enumerate(data["keys"], start=1):
        where = f"{path}: entry {i}" + (f" ({entry.get('name')!r})" if isinstance(entry, dict) else "")
        if not isinstance(entry, dict) or set(entry) != {"name", "scopes", "sha256"}:
            raise KeyFileError(f"{where}: needs exactly name, scopes and sha256 (`ragops keys add` writes one)")
        name, scopes, hexdigest = entry["name"], entry["scopes"], str(entry["sha256"])
        if not isinstance(name, str) or not name.strip() or name in names:
            raise KeyFileError(f"{where}: the name must be a non-empty string used once in the file")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
            raise KeyFileError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}; got {scopes!r}")
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise KeyFileError(f"{where}: sha256 must be 64 lower-case hex digits (the key's SHA-256, never the key)")
        names.add(name)
        keys.append(Key(name, frozenset(scopes), bytes.fromhex(hexdigest)))
    return keys


def write_keys(path: Path, keys: list[Key]) -> None:
    """Replace the file atomically (a server reading it sees the old or the new one), mode 0600."""
    entries = [{"name": k.name, "scopes": sorted(k.scopes), "sha256": k.digest.hex()} for k in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(scratch, truncate=True) as handle:
        yaml.safe_dump({"keys": entries}, handle, sort_keys=False)
    os.replace(scratch, path)


@dataclass(frozen=True)
class Decision:
    status: int  # 200 (go on), 401 or 403
    message: str = ""
    name: str = ""  # the key's name, for the log (never the key)


class KeyRing:
    """The key file as the server uses it: read again when it changes (checked on each request,
    one stat call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()  # before reading: a change while it is read is read again
        self._keys = read_keys(path)  # at start a bad file stops the server

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def keys(self) -> list[Key]:
        stamp = self._stat()
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._keys = [] if stamp is None else read_keys(self.path)
                    log.info("key file %s read again: %d keys", self.path, len(self._keys))
                except KeyFileError as exc:
                    log.error("%s; the %d keys read before stay in force", exc, len(self._keys))
                self._stamp = stamp
            return self._keys

    def authorize(self, authorization: str | None, path: str) -> Decision:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return Decision(401, "this endpoint needs an API key: send the header 'Authorization: Bearer <key>' "
                                 "(`ragops keys add` makes one)")
        presented_digest, found = digest(presented.strip()), None
        for key in self.keys():  # every entry compared, in constant time each: no early exit to time
            if hmac.compare_digest(presented_digest, key.digest):
                found = key
        if found is None:
            return Decision(401, "unknown API key: check the key, or ask for one (`ragops keys add`)")
        needed = ENDPOINT_SCOPES.get(path, "admin")
        if needed not in found.scopes and "admin" not in found.scopes:
            return Decision(403, f"the key {found.name!r} has the scopes {', '.join(sorted(found.scopes))}; "
                                 f"{path} needs {needed!r} (or admin): use another key or add the scope",
                            found.name)
        return Decision(200, name=found.name)


def listen_host(host: str, keys: KeyRing | None) -> tuple[str, str | None]:
    """Where the server listens, and what to say about it: without keys, loopback only."""
    if keys is not None or host in ("127.0.0.1", "localhost", "::1"):
        return host, None
    return "127.0.0.1", (f"no key file (RAGOPS_SERVE_KEYS is not set): listening on 127.0.0.1 only, not {host}; "
                         "anyone who can reach the port could ask. Make keys with `ragops keys add NAME --scope "
                         "answer`, set RAGOPS_SERVE_KEYS to the file, and start again")

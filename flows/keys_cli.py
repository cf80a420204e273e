"""`ragops keys`: the API keys of `ragops serve` (components/serving/keys.py).

    export RAGOPS_SERVE_KEYS=/etc/ragops/keys.yaml
    ragops keys add web-frontend --scope answer --scope feedback   # prints the key once
    ragops keys list
    ragops keys remove web-frontend                                 # refused from the next request on

A running server reads the file again when it changes: no restart.
"""

from __future__ import annotations

from pathlib import Path

import typer

from flows.terminal import console, fail

keys_app = typer.Typer(help="API keys of `ragops serve`, in the file RAGOPS_SERVE_KEYS names: add, list, remove.")


def _key_file(file: Path | None) -> Path:
    from components.settings import Settings

    path = file or Settings().serve_keys
    if path is None:
        fail("no key file: set RAGOPS_SERVE_KEYS to its path (outside the project: it is no part of params.yaml) "
             "or pass --file")
    return path


def _read(path: Path) -> list:
    from components.serving.keys import KeyFileError, read_keys

    try:
        return read_keys(path) if path.exists() else []
    except KeyFileError as exc:
        fail(str(exc))


def _locked(path: Path):
    """An exclusive lock for a read-change-write of the key file (a lock file beside it)."""
    from components.settings import file_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    return file_lock(path.with_name(f".{path.name}.lock"))


FILE = typer.Option(None, "--file", help="the key file (default: $RAGOPS_SERVE_KEYS)")


@keys_app.command("add")
def keys_add(name: str = typer.Argument(..., help="who the key is for, e.g. web-frontend"),
             scope: list[str] = typer.Option(..., "--scope", help="answer, feedback or admin (repeat for several)"),
             file: Path | None = FILE) -> None:
    """Make a key: its hash goes to the file, the key is printed once (store it now)."""
    from components.serving.keys import SCOPES, Key, digest, new_key, write_keys

    path = _key_file(file)
    if unknown := sorted(set(scope) - set(SCOPES)):
        fail(f"unknown scope {', '.join(unknown)}: use {', '.join(SCOPES)}")
    key = new_key()
    with _locked(path):  # two commands at once: each sees the other's key
        keys = _read(path)
        if any(k.name == name for k in keys):
            fail(f"{path} already has a key named {name!r}: remove it first (`ragops keys remove {name}`) or pick "
                 "another name")
        write_keys(path, [*keys, Key(name, frozenset(scope), digest(key))])
    console.print(f"added {name!r} ({', '.join(sorted(set(scope)))}) to {path}; the key, shown only now:", soft_wrap=True)
    print(key)


@keys_app.command("list")
def keys_list(file: Path | None = FILE) -> None:
    """Names and scopes of the keys (the keys themselves are not stored)."""
    path = _key_file(file)
    for key in _read(path):
        console.print(f"{key.name}: {', '.join(sorted(key.scopes))}", soft_wrap=True)


@keys_app.command("remove")
def keys_remove(name: str = typer.Argument(..., help="the key's name"), file: Path | None = FILE) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    from components.serving.keys import write_keys

    path = _key_file(file)
    with _locked(path):
        keys = _read(path)
        if not any(k.name == name for k in keys):
            fail(f"{path} has no key named {name!r} (`ragops keys list` shows them)")
        write_keys(path, [k for k in keys if k.name != name])
    console.print(f"removed {name!r} from {path}", soft_wrap=True)

"""API keys of `ragops serve` (components/serving/keys.py): the key file's checks, 401 and 403 by
scope, open health endpoints, a changed file in force without a restart, a broken one keeping the
keys before it, keys never logged, and loopback only without a key file. The real server with a
key file: tests/e2e/test_serve.py."""

from __future__ import annotations

import logging
import os

import pytest
from fastapi.testclient import TestClient

from components.serving.app import create_app
from components.serving.keys import Key, KeyFileError, KeyRing, digest, listen_host, new_key, read_keys, write_keys
from tests.unit.test_serving import CONFIG, FakeAssistant, _holder

pytestmark = pytest.mark.unit


def _ring(tmp_path, **scopes: tuple[str, ...]) -> tuple[KeyRing, dict[str, str]]:
    made = {name: new_key() for name in scopes}
    write_keys(tmp_path / "keys.yaml", [Key(n, frozenset(s), digest(made[n])) for n, s in scopes.items()])
    return KeyRing(tmp_path / "keys.yaml"), made


@pytest.mark.parametrize(("text", "fragments"), [
    ("keys: [1, 2", ["cannot read the key file", "keys:\n  - name:"]),
    ("- name: a", ["a mapping with a 'keys' list"]),
    ("keys:\n  - {name: a, scopes: [answer]}", ["entry 1 ('a')", "exactly name, scopes and sha256", "ragops keys add"]),
    ("keys:\n  - {name: a, scopes: [read], sha256: " + "ab" * 32 + "}", ["entry 1 ('a')", "answer, feedback, admin", "'read'"]),
    ("keys:\n  - {name: a, scopes: [answer], sha256: rgo_secret}", ["64 lower-case hex digits", "never the key"]),
    ("keys:\n  - {name: a, scopes: [admin], sha256: " + "ab" * 32 + "}\n  - {name: a, scopes: [admin], sha256: "
     + "cd" * 32 + "}", ["entry 2 ('a')", "used once"]),
])
def test_a_bad_key_file_is_refused_naming_the_file_the_entry_and_the_fix(tmp_path, text, fragments):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeyFileError) as refused:
        read_keys(path)
    assert str(refused.value).startswith(str(path))
    for fragment in fragments:
        assert fragment in str(refused.value)


def test_keys_are_checked_by_scope_and_stored_as_hashes_only(tmp_path):
    ring, made = _ring(tmp_path, web=("answer",), ops=("admin",), rating=("feedback",))
    stored = (tmp_path / "keys.yaml").read_text()
    assert all(key not in stored for key in made.values()) and oct(os.stat(tmp_path / "keys.yaml").st_mode)[-3:] == "600"
    ask = ring.authorize
    assert ask(None, "/v1/answer").status == 401 and ask("Basic abc", "/v1/answer").status == 401
    assert ask("Bearer " + made["web"][:-1] + "x", "/v1/answer").status == 401
    assert ask("Bearer " + made["web"], "/v1/answer").name == "web"
    assert ask("bearer " + made["web"], "/v1/retrieve").status == 200  # the scheme is case-insensitive
    refused = ask("Bearer " + made["web"], "/v1/feedback")
    assert refused.status == 403 and "'web' has the scopes answer" in refused.message and "'feedback'" in refused.message
    assert ask("Bearer " + made["rating"], "/v1/answer/batch").status == 403
    assert {ask("Bearer " + made["ops"], p).status for p in ("/v1/answer", "/v1/feedback", "/v1/other")} == {200}
    assert ask("Bearer " + made["rating"], "/v1/other").status == 403  # an endpoint not listed needs admin


def test_a_changed_key_file_is_in_force_without_a_restart_and_a_broken_one_keeps_the_keys_before(tmp_path, caplog):
    ring, made = _ring(tmp_path, web=("answer",))
    later = new_key()
    write_keys(ring.path, [*read_keys(ring.path), Key("late", frozenset({"answer"}), digest(later))])
    assert ring.authorize(f"Bearer {later}", "/v1/answer").status == 200
    caplog.set_level(logging.INFO, "ragops.serve")
    ring.path.write_text("keys: [")
    assert ring.authorize(f"Bearer {later}", "/v1/answer").status == 200
    assert "cannot read the key file" in caplog.text and "the 2 keys read before stay in force" in caplog.text
    write_keys(ring.path, [Key("late", frozenset({"answer"}), digest(later))])  # web revoked
    assert ring.authorize(f"Bearer {made['web']}", "/v1/answer").status == 401
    ring.path.unlink()  # no file: no key is good
    assert ring.authorize(f"Bearer {later}", "/v1/answer").status == 401
    assert made["web"] not in caplog.text and later not in caplog.text


def test_the_app_asks_for_a_key_on_v1_only(tmp_path):
    ring, made = _ring(tmp_path, web=("answer",))
    holder, registry = _holder({"1": FakeAssistant("1")})
    registry.champion = "1"
    holder.poll()
    client = TestClient(create_app(holder, CONFIG, ring), raise_server_exceptions=False)
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    refused = client.post("/v1/answer", json={"question": "hi"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <key>" in refused.json()["error"]
    answered = client.post("/v1/answer", json={"question": "hi"}, headers={"Authorization": f"Bearer {made['web']}"})
    assert answered.status_code == 200 and answered.json()["answer"] == "answer to hi"
    forbidden = client.post("/v1/feedback", json={"trace_id": "t", "rating": "up"},
                            headers={"Authorization": f"Bearer {made['web']}"})
    assert forbidden.status_code == 403


def test_without_a_key_file_the_server_listens_on_loopback_only(tmp_path):
    assert listen_host("127.0.0.1", None) == ("127.0.0.1", None)
    host, warning = listen_host("0.0.0.0", None)
    assert host == "127.0.0.1" and "not 0.0.0.0" in warning and "RAGOPS_SERVE_KEYS" in warning
    ring, _ = _ring(tmp_path, web=("answer",))
    assert listen_host("0.0.0.0", ring) == ("0.0.0.0", None)
    with pytest.raises(KeyFileError, match="cannot read the key file"):
        KeyRing(tmp_path / "missing.yaml")  # at start, a key file that is not there stops the server

"""`ragops serve` as a user runs it, on the tiny champion's project with a standalone Weaviate
server on its data and API keys: answers and refuses bad input over HTTP, asks for a key with the
right scope (keys added and removed while it runs) and a 429 past a key's burst, stays
responsive while answering, finishes what is in flight on SIGTERM,
and follows the champion alias (a price edit is reindexed, probed and promoted as v2, a rollback
brings back v1) without a restart or a failed request. (Not ready and a 503 saying what to do
while there is no champion: tests/unit/test_serving.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest
from mlflow.exceptions import MlflowException

from components.evaluation.bundle import spread
from components.index.server import weaviate_server
from components.settings import Settings
from tests.support.cli import RAGOPS, output, ragops, ragops_env, said, succeeded
from tests.support.processes import free_port, wait_for
from tests.support.project import TINY, documents, front_matter, read_jsonl, set_price, update_params
from tests.support.registry import mlflow_client

pytestmark = pytest.mark.e2e
MAX_CHARS, MAX_BATCH, ASKERS = 200, 8, 6
EVALUATED = TINY["evaluation"]["max_questions"]


def _new_key(repo, env: dict, name: str, *scopes: str) -> str:
    """`ragops keys add` as a user runs it: the key is the last line it prints."""
    made = succeeded(ragops(repo, "keys", "add", name, *[a for s in scopes for a in ("--scope", s)], env=env, timeout=120))
    return made.stdout.strip().splitlines()[-1]


def _check_keys(base: str, env: dict, repo, log_path, admin: str) -> None:
    """401 without a key or with a wrong one, 403 for a key without the scope, health open; a key
    added or removed with `ragops keys` counts from the next request, no restart; no key in the log."""
    with httpx.Client(base_url=base, timeout=120) as anyone:
        assert anyone.get("/healthz").status_code == 200 and anyone.get("/readyz").status_code == 200
        asked = {"json": {"question": "Can I pay with PayPal?"}}
        assert anyone.post("/v1/answer", **asked).status_code == 401
        assert anyone.post("/v1/retrieve", headers={"Authorization": f"Bearer {admin[:-2]}xy"}, **asked).status_code == 401
        rater = _new_key(repo, env, "e2e-rater", "feedback")  # written while the server runs
        forbidden = anyone.post("/v1/retrieve", headers={"Authorization": f"Bearer {rater}"}, **asked)
        assert forbidden.status_code == 403 and "needs 'answer'" in forbidden.json()["error"], forbidden.text
        asker = _new_key(repo, env, "e2e-asker", "answer")
        assert anyone.post("/v1/retrieve", headers={"Authorization": f"Bearer {asker}"}, **asked).status_code == 200
        succeeded(ragops(repo, "keys", "remove", "e2e-asker", env=env, timeout=120))
        assert anyone.post("/v1/retrieve", headers={"Authorization": f"Bearer {asker}"}, **asked).status_code == 401
        # a burst over the key's 60: refused with 429 and Retry-After (bad feedback bodies: no model work)
        burst = [anyone.post("/v1/feedback", headers={"Authorization": f"Bearer {rater}"}, json={}) for _ in range(100)]
        assert {r.status_code for r in burst} == {422, 429} and burst[0].status_code == 422, [r.status_code for r in burst]
        limited = next(r for r in burst if r.status_code == 429)
        assert int(limited.headers["Retry-After"]) >= 1 and "serve.rate_limit_burst" in limited.json()["error"]
    assert not any(key in log_path.read_text() for key in (admin, rater, asker))


def _sigterm_finishes_what_is_in_flight(serve: subprocess.Popen, base: str, auth: dict) -> None:
    """SIGTERM (what Kubernetes and compose send): answers in flight are finished and sent, a new
    connection is refused, the process exits 0."""
    batch = {"questions": [{"question": f"Tell me all about the warranty of product {i}."} for i in range(MAX_BATCH)]}
    replies: list = []

    def ask() -> None:
        with httpx.Client(base_url=base, timeout=300, headers=auth) as client:
            reply = client.post("/v1/answer/batch", json=batch)
            replies.append((reply.status_code, time.monotonic()))

    askers = [threading.Thread(target=ask) for _ in range(ASKERS)]
    for asker in askers:
        asker.start()
    time.sleep(0.5)  # the requests are in: one on the model, the rest waiting for it
    signalled = time.monotonic()
    os.killpg(serve.pid, signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/healthz", timeout=5)  # the listening socket is closed: no new work
    for asker in askers:
        asker.join(timeout=300)
    assert [status for status, _ in replies] == [200] * ASKERS, replies
    assert max(at for _, at in replies) > signalled, "nothing was in flight at SIGTERM"
    assert serve.wait(timeout=120) == 0


def _raw_post(port: int, headers: str, body: bytes) -> str:
    """A request whose headers say more than the client sends (httpx would not send it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n\r\n".encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.decode()


def _check_bad_requests(http: httpx.Client, port: int) -> None:
    """Every bad input gets its status and an error naming the field, the limit and the fix."""
    json_type = {"Content-Type": "application/json"}
    refused = {
        "blank": (http.post("/v1/answer", json={"question": "  "}), 422, "question is empty"),
        "too long": (http.post("/v1/answer", json={"question": "x" * (MAX_CHARS + 1)}), 422,
                     f"over the limit of {MAX_CHARS} (serve.max_question_chars)"),
        "batch": (http.post("/v1/answer/batch", json={"questions": [{"question": "hi"}] * (MAX_BATCH + 1)}), 422,
                  f"1 to {MAX_BATCH} (serve.max_batch_size)"),
        "not json": (http.post("/v1/answer", content=b'{"question": ', headers=json_type), 400, "not valid JSON"),
        "text": (http.post("/v1/answer", content=b'{"question": "hi"}', headers={"Content-Type": "text/plain"}), 415,
                 "must be application/json"),
        "unknown field": (http.post("/v1/retrieve", json={"question": "hi", "top_k": 50}), 422,
                          "unknown field 'top_k' (allowed: question, filters)"),
        "wrong type": (http.post("/v1/answer", json={"question": "hi", "filters": "yes"}), 422, "field 'filters'"),
        # the served champion's own metadata fields (a real bundle's manifest): no such field here
        "unknown filter": (http.post("/v1/retrieve", json={"question": "hi", "filters": {"colour": "red"}}), 422,
                           "filters.colour: not a field this index can filter on"),
        "large body": (http.post("/v1/answer", content=b" " * 100_000, headers=json_type), 413, "over the limit of"),
        "1 MB question": (http.post("/v1/answer", json={"question": "x" * 1_000_000}), 413, "over the limit of"),
        "empty body": (http.post("/v1/answer", content=b"", headers=json_type), 400, "not valid JSON"),
    }
    for what, (response, status, fragment) in refused.items():
        assert response.status_code == status, (what, response.status_code, response.text)
        assert fragment in response.json()["error"], (what, response.json())
        assert "Traceback" not in response.text
    # declared far too large: refused from the header, the body never read
    reply = _raw_post(port, f"Authorization: {http.headers['Authorization']}\r\nContent-Type: application/json\r\n"
                            "Content-Length: 1000000000", b'{"question')
    assert reply.startswith("HTTP/1.1 413") and "over the limit of" in reply, reply[:500]


def _long_answers_leave_health_responsive(base: str, headers: dict) -> None:
    """Full batches queue on the model lock; /healthz and /readyz must not wait for them."""
    batch = {"questions": [{"question": f"Tell me everything about the warranty of product {i}."}
                           for i in range(MAX_BATCH)]}
    answered: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(base_url=base, timeout=600, headers=headers) as client:
            answered.append(client.post("/v1/answer/batch", json=batch))

    askers = [threading.Thread(target=ask) for _ in range(ASKERS)]
    tic = time.monotonic()
    for asker in askers:
        asker.start()
    time.sleep(0.5)
    checks = []  # (seconds, both 200, answers still in flight when it returned)
    with httpx.Client(base_url=base, timeout=30) as client:
        while any(asker.is_alive() for asker in askers):
            started = time.monotonic()
            ok = client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
            checks.append((time.monotonic() - started, ok, any(asker.is_alive() for asker in askers)))
            time.sleep(0.1)
    busy = time.monotonic() - tic
    print(f"{len(checks)} health checks in {busy:.1f} s of queued answers, slowest {max(c[0] for c in checks):.3f} s")
    assert all(ok for _, ok, _ in checks) and any(in_flight for _, _, in_flight in checks), checks
    # Health answered within the 30 s timeout while answers were in flight, and did not wait for the
    # queue of answers to drain (a loose bound: the busy span is every batch answered in turn, and a
    # machine busy enough to slow the checks slows the answers as much).
    assert max(seconds for seconds, _, _ in checks) < busy / 2, (checks, busy)
    assert [r.status_code for r in answered] == [200] * ASKERS
    assert all(len(r.json()["answers"]) == MAX_BATCH and r.json()["bundle_version"] == "1" for r in answered)


def _check_trace(client, body: dict) -> None:
    """The served answer is an MLflow trace in the project's store: route, retrieve and generate
    spans with the question and chunks, tagged with the bundle, its models, index and data."""
    def stored():
        try:
            trace = client.get_trace(body["trace_id"])
        except MlflowException:
            return None  # exported in the background: not there yet
        # its spans can land before its info and tags do
        return trace if "bundle_version" in trace.info.tags else None

    trace = wait_for(stored, 60, "the answer's trace in the tracking store")
    spans = {s.name: s for s in trace.data.spans}
    assert {"answer", "route", "retrieve", "generate"} <= set(spans), spans
    assert spans["answer"].inputs == {"question": body["question"]}
    assert [c["doc_id"] for c in spans["retrieve"].outputs] == [c["doc_id"] for c in body["chunks"]]
    manifest_tags = {"bundle_version", "router_version", "generator_version", "collection"}
    assert manifest_tags <= set(trace.info.tags) and trace.info.tags["bundle_version"] == "1"
    assert trace.info.tags["collection"] == "Catalog_v1"
    assert any(k.startswith("data.") and k.endswith(".md5") for k in trace.info.tags), trace.info.tags


def _check_feedback(http: httpx.Client, client, trace_id: str) -> None:
    """A down-vote with a correction lands on the answer's trace; an unknown trace is a 404."""
    given = http.post("/v1/feedback", json={"trace_id": trace_id, "rating": "down",
                                            "correction": "It costs 1 USD.", "comment": "wrong price"})
    assert given.status_code == 200 and given.json()["recorded"] == ["user_rating", "expected_answer"], given.text
    assessments = {a.name: a.value for a in client.get_trace(trace_id).info.assessments}
    assert assessments == {"user_rating": "down", "expected_answer": "It costs 1 USD."}
    unknown = http.post("/v1/feedback", json={"trace_id": "tr-00000000000000000000000000000000", "rating": "up"})
    assert unknown.status_code == 404 and "no trace" in unknown.json()["error"], unknown.text


@pytest.mark.timeout(1800)
def test_serve_answers_refuses_bad_input_and_follows_the_champion(champion_repo, tmp_path):
    repo = champion_repo
    # per key, bursts of 60 and 10 requests a second: the admin key's bursts of bad requests and
    # concurrent batches below fit, and so does the reader's 5 a second during the moves
    update_params(repo, {"serve": {"reload_poll_seconds": 1, "max_question_chars": MAX_CHARS,
                                   "max_batch_size": MAX_BATCH, "rate_limit_per_minute": 600, "rate_limit_burst": 60}})
    product = front_matter(documents(repo)[0])
    question = f"How much does the {product['name']} cost?"
    settings = Settings(home=repo / ".ragops")
    # Without the evaluation's conversions, the served bundle converts its generator from the registry's
    # download of its adapter, which is removed once the bundle is loaded
    shutil.rmtree(settings.home / "cache")
    with weaviate_server(settings, settings.weaviate_data_path, tmp_path / "weaviate.log") as weaviate:
        # Served with API keys (a key file outside the project): every client below holds an admin key.
        keys_env = {**weaviate.env(), "RAGOPS_SERVE_KEYS": str(tmp_path / "secrets" / "keys.yaml")}
        admin = _new_key(repo, keys_env, "e2e-admin", "admin")
        auth = {"Authorization": f"Bearer {admin}"}
        env = ragops_env(repo, keys_env)
        port, log_path = free_port(), tmp_path / "serve.log"
        base = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            serve = subprocess.Popen([RAGOPS, "serve", "--port", str(port)], cwd=repo, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with httpx.Client(base_url=base, timeout=30, headers=auth) as http:
                def ready_version() -> str | None:
                    assert serve.poll() is None, log_path.read_text()[-3000:]
                    try:
                        ready = http.get("/readyz")
                    except httpx.TransportError:
                        return None
                    return ready.json()["version"] if ready.status_code == 200 else None

                assert wait_for(ready_version, 300, "champion v1 to be served") == "1"
                ready = http.get("/readyz").json()
                assert (ready["bundle"], ready["collection"], ready["last_load_error"]) == (
                    "ragops-assistant", "Catalog_v1", None)

                answer = http.post("/v1/answer", json={"question": question}, timeout=120)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["bundle_version"] == "1" and body["question"] == question and "answer" in body
                assert body["route"] in ("catalog", "policy") and body["chunks"], body
                _check_trace(mlflow_client(repo), body)
                _check_feedback(http, mlflow_client(repo), body["trace_id"])
                retrieved = http.post("/v1/retrieve", json={"question": question}, timeout=120).json()
                assert retrieved["bundle_version"] == "1" and "answer" not in retrieved
                assert product["id"] in {c["doc_id"] for c in retrieved["chunks"]}, retrieved
                # a filter on a metadata field: no chunk of this product's category comes back
                other = http.post("/v1/retrieve", timeout=120, json={
                    "question": question, "filters": {"category": {"ne": product["category"]}}}).json()
                assert other["chunks"] and product["id"] not in {c["doc_id"] for c in other["chunks"]}, other

                _check_bad_requests(http, port)
                assert http.get("/healthz").status_code == 200
                assert http.post("/v1/answer", json={"question": question}, timeout=120).status_code == 200
                _long_answers_leave_health_responsive(base, auth)
                _check_keys(base, keys_env, repo, log_path, admin)

                # The first champion has nothing before it to roll back to.
                undo = ragops(repo, "rollback", env=weaviate.env(), timeout=300)
                assert undo.returncode == 2 and "none to roll back to" in said(undo), output(undo)

                # Requests keep flowing while the champion moves: v1 → v2 (reindex) → v1 (rollback).
                served, failures, stop = [], [], threading.Event()

                def keep_asking() -> None:
                    with httpx.Client(base_url=base, timeout=120, headers=auth) as client:
                        while not stop.is_set():
                            try:
                                reply = client.post("/v1/retrieve", json={"question": question})
                                if reply.status_code == 200:
                                    served.append(reply.json()["bundle_version"])
                                else:
                                    failures.append((reply.status_code, reply.text[:300]))
                            except httpx.HTTPError as exc:
                                failures.append(repr(exc))
                            time.sleep(0.2)

                reader = threading.Thread(target=keep_asking)
                reader.start()
                try:
                    # A price edit of a product no evaluated golden question asks about: v2 on a new
                    # index, its freshness probed and its outcomes paired with the champion's.
                    asked = {d for row in spread(read_jsonl(repo / "data" / "raw" / "golden.jsonl"), EVALUATED)
                             for d in row["gold_doc_ids"]}
                    edited = next(d for d in documents(repo) if d.stem not in asked)
                    set_price(edited, 1234.5)
                    reindex = succeeded(ragops(repo, "reindex", env=weaviate.env(), timeout=900))
                    assert "→ champion" in reindex.stdout, output(reindex)[-3000:]
                    client = mlflow_client(repo)
                    second = client.get_model_version_by_alias("ragops-assistant", "champion")
                    assert str(second.version) == "2" and "vs champion v1" in second.description
                    fresh = client.get_run(second.tags["run_id"]).data.metrics
                    # one changed document, topped up with an unchanged one to the tiny profile's minimum of 2
                    assert (fresh["freshness_retrieval"], fresh["freshness_retrieval_samples"]) == (1.0, 2.0)
                    assert "vs_champion_retrieval_recall_at_k" in fresh and "vs_champion_key_fact_accuracy" in fresh

                    assert wait_for(lambda: ready_version() == "2", 300, "champion v2 to be served")
                    assert http.get("/readyz").json()["collection"] == "Catalog_v2"
                    again = http.post("/v1/answer", json={"question": question}, timeout=120).json()
                    assert again["bundle_version"] == "2", again
                    fresh_hits = http.post("/v1/retrieve", timeout=120, json={
                        "question": f"How much does the {front_matter(edited)['name']} cost?"}).json()
                    assert any("1234.50" in c["text"] for c in fresh_hits["chunks"]), fresh_hits  # v2 reads its own index

                    succeeded(ragops(repo, "rollback", env=weaviate.env(), timeout=300))
                    assert wait_for(lambda: ready_version() == "1", 300, "champion v1 to be served again")
                    time.sleep(2)  # a few requests on the restored champion
                finally:
                    stop.set()
                    reader.join(timeout=180)
                print(f"{len(served)} retrieve requests during the moves, {len(failures)} failed")
                assert not failures, failures[:5]
                assert served[0] == "1" and "2" in served and served[-1] == "1", served
                assert http.get("/readyz").json()["collection"] == "Catalog_v1"
            log_text = log_path.read_text()
            assert "champion v1 → v2 loaded in" in log_text and "champion v2 → v1 loaded in" in log_text, log_text[-3000:]
            # the same models, another index version: shared, not loaded again
            assert log_text.count("on the models already loaded") == 2, log_text[-3000:]
            _sigterm_finishes_what_is_in_flight(serve, base, auth)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGINT)
            try:
                serve.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
            print(log_path.read_text()[-5000:])
    assert serve.returncode == 0, log_path.read_text()[-3000:]

"""`ragops serve` as a user runs it, on a fresh project copy with the tiny generator and a standalone
Weaviate server: up before any champion exists, ready once `ragops run` made one, answers and
refuses bad input over HTTP, stays responsive while answering, and follows the champion alias
(a reindex promotes v2, a rollback brings back v1) without a restart or a failed request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from components.bundle_evaluation import spread
from components.config import Settings
from components.index.server import weaviate_server
from tests.conftest import free_port, read_jsonl, wait_for
from tests.e2e.test_cli import _front_matter, _project, _set_price

pytestmark = pytest.mark.e2e
RAGOPS = str(Path(sys.executable).parent / "ragops")
MAX_CHARS, MAX_BATCH, EVALUATED, ASKERS = 200, 8, 6, 6


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
                          "unknown field 'top_k' (allowed: question, category, in_stock)"),
        "wrong type": (http.post("/v1/answer", json={"question": "hi", "in_stock": "yes"}), 422, "field 'in_stock'"),
        "large body": (http.post("/v1/answer", content=b" " * 100_000, headers=json_type), 413, "over the limit of"),
        "1 MB question": (http.post("/v1/answer", json={"question": "x" * 1_000_000}), 413, "over the limit of"),
        "empty body": (http.post("/v1/answer", content=b"", headers=json_type), 400, "not valid JSON"),
    }
    for what, (response, status, fragment) in refused.items():
        assert response.status_code == status, (what, response.status_code, response.text)
        assert fragment in response.json()["error"], (what, response.json())
        assert "Traceback" not in response.text
    # declared far too large: refused from the header, the body never read
    reply = _raw_post(port, "Content-Type: application/json\r\nContent-Length: 1000000000", b'{"question')
    assert reply.startswith("HTTP/1.1 413") and "over the limit of" in reply, reply[:500]


def _long_answers_leave_health_responsive(base: str) -> None:
    """Full batches queue on the model lock; /healthz and /readyz must not wait for them."""
    batch = {"questions": [{"question": f"Tell me everything about the warranty of product {i}."}
                           for i in range(MAX_BATCH)]}
    answered: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
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


@pytest.mark.timeout(1800)
def test_serve_answers_refuses_bad_input_and_follows_the_champion(project_root, tmp_path):
    repo = _project(project_root, tmp_path, {
        "models": {"generator": "tiny:llama"},
        "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 64, "max_length": 1024,
                      "holdout_examples": 2},
        "router": {"epochs": 1},
        # the random tiny generator never cites: only retrieval is gated and compared with the champion
        "evaluation": {"max_questions": EVALUATED, "gates": {"retrieval_recall_at_k": 0.5},
                       "non_inferiority": {"retrieval_recall_at_k": 0.05}, "ablation_questions": 4,
                       "general_prompts": 4, "freshness_probes": 2, "latency_questions": 2},
        "serve": {"reload_poll_seconds": 1, "max_question_chars": MAX_CHARS, "max_batch_size": MAX_BATCH},
    })
    product = _front_matter(sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))[0])
    question = f"How much does the {product['name']} cost?"
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log") as weaviate:
        env = {**os.environ, **weaviate.env(), "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200"}
        env.pop("PREFECT_API_URL", None)  # a user's run starts its own temporary Prefect server
        port, log_path = free_port(), tmp_path / "serve.log"
        base = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            serve = subprocess.Popen([RAGOPS, "serve", "--port", str(port)], cwd=repo, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                def up() -> bool:
                    assert serve.poll() is None, log_path.read_text()[-3000:]
                    try:
                        return http.get("/healthz").status_code == 200
                    except httpx.TransportError:
                        return False

                def ready_version() -> str | None:
                    assert serve.poll() is None, log_path.read_text()[-3000:]
                    ready = http.get("/readyz")
                    return ready.json()["version"] if ready.status_code == 200 else None

                # Up and alive with no champion yet: not ready, and saying what to do.
                wait_for(up, 300, "ragops serve to listen")
                wait_for(lambda: "no champion" in http.get("/readyz").json().get("error", ""), 120, "the first poll")
                assert http.get("/readyz").status_code == 503
                refused = http.post("/v1/answer", json={"question": question})
                assert refused.status_code == 503 and "ragops run" in refused.json()["error"]

                run = subprocess.run([RAGOPS, "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
                assert run.returncode == 0 and "→ champion" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
                assert wait_for(ready_version, 300, "champion v1 to be served") == "1"
                ready = http.get("/readyz").json()
                assert (ready["bundle"], ready["collection"], ready["last_load_error"]) == (
                    "ragops-assistant", "Catalog_v1", None)

                answer = http.post("/v1/answer", json={"question": question}, timeout=120)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["bundle_version"] == "1" and body["question"] == question and "answer" in body
                assert body["route"] in ("catalog", "policy") and body["chunks"], body
                retrieved = http.post("/v1/retrieve", json={"question": question}, timeout=120).json()
                assert retrieved["bundle_version"] == "1" and "answer" not in retrieved
                assert product["id"] in {c["doc_id"] for c in retrieved["chunks"]}, retrieved

                _check_bad_requests(http, port)
                assert http.get("/healthz").status_code == 200
                assert http.post("/v1/answer", json={"question": question}, timeout=120).status_code == 200
                _long_answers_leave_health_responsive(base)

                # Requests keep flowing while the champion moves: v1 → v2 (reindex) → v1 (rollback).
                served, failures, stop = [], [], threading.Event()

                def keep_asking() -> None:
                    with httpx.Client(base_url=base, timeout=120) as client:
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
                    # A price edit of a product no evaluated golden question asks about: v2 on a new index.
                    asked = {d for row in spread(read_jsonl(repo / "data" / "raw" / "golden.jsonl"), EVALUATED)
                             for d in row["gold_doc_ids"]}
                    edited = next(d for d in sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))
                                  if d.stem not in asked)
                    _set_price(edited, 1234.5)
                    reindex = subprocess.run([RAGOPS, "reindex"], cwd=repo, env=env, capture_output=True, text=True,
                                             timeout=900)
                    assert reindex.returncode == 0 and "→ champion" in reindex.stdout, (
                        reindex.stdout[-3000:] + reindex.stderr[-3000:])
                    assert wait_for(lambda: ready_version() == "2", 300, "champion v2 to be served")
                    assert http.get("/readyz").json()["collection"] == "Catalog_v2"
                    again = http.post("/v1/answer", json={"question": question}, timeout=120).json()
                    assert again["bundle_version"] == "2", again
                    fresh = http.post("/v1/retrieve", timeout=120, json={
                        "question": f"How much does the {_front_matter(edited)['name']} cost?"}).json()
                    assert any("1234.50" in c["text"] for c in fresh["chunks"]), fresh  # v2 reads its own index

                    back = subprocess.run([RAGOPS, "rollback"], cwd=repo, env=env, capture_output=True, text=True,
                                          timeout=300)
                    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
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
        finally:
            os.killpg(serve.pid, signal.SIGINT)
            try:
                serve.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
            print(log_path.read_text()[-5000:])
    assert serve.returncode == 0, log_path.read_text()[-3000:]

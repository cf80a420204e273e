"""`ragops serve`: the champion bundle over HTTP (FastAPI, uvicorn in-process).

    $ ragops serve --port 8080
    $ curl -s localhost:8080/v1/answer -H 'Content-Type: application/json' \\
        -d '{"question": "How much does the Aurora ANC Headphones Edge cost?"}'

Endpoints: GET /healthz (alive), GET /readyz (200 with the loaded champion, 503 with why not),
POST /v1/answer, /v1/answer/batch and /v1/retrieve (route + retrieval, no generation), and
POST /v1/feedback (a rating of an answer, by its trace_id). Requests
are checked against params.yaml `serve` before any model work; a bad one gets a 4xx JSON
`{"error": ...}` naming the field, the limit and the fix. The champion is followed as its alias
moves (components/serving/champion.py). With a key file, /v1 needs a key of the endpoint's scope
(keys.py); limits bound each key's rate, the queue for the model and each request's time
(limits.py); concurrent answers share one generate call (batching.py).
"""

from __future__ import annotations

import json
import logging
import signal
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from components.assistant import Manifest, Stage
from components.config import ServeConfig
from components.index.search import FilterError, SearchFilters
from components.registry.traces import (UnknownTrace, answer_tags, dropped_traces, limit_export_retries, record_feedback,
                                        with_trace_ids)
from components.serving.batching import AnswerBatcher
from components.serving.champion import ChampionHolder, NotReady, bundle_weaviate, champion_reloader
from components.serving.keys import KeyRing
from components.serving.limits import Admission, RateLimits, Refused, guard_v1
from components.settings import Settings, redacted

log = logging.getLogger("ragops.serve")

EXAMPLE = '{"question": "How much does the Aurora ANC Headphones Edge cost?"}'
FILTER_EXAMPLE = '{"question": "...", "filters": {"<field>": "<value>", "<number field>": {"lte": 50}}}'
ENDPOINTS = "GET /healthz, GET /readyz, POST /v1/answer, /v1/answer/batch, /v1/retrieve, /v1/feedback"
BATCH_EXAMPLE = '{"questions": [{"question": "How much is the kettle?"}, {"question": "Can I pay with PayPal?"}]}'
# The longest JSON spelling of one character: an escaped astral character ("\ud83d\ude00").
BYTES_PER_CHAR = 12
BYTES_PER_QUESTION_FIELDS = 1024  # keys, filters (a few conditions), punctuation around one question
BYTES_ENVELOPE = 4096


class RequestError(Exception):
    """A request the server refuses: HTTP status and a message naming the field, the limit and the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str
    # Retrieval filters on the index's metadata fields (index.metadata_fields), checked against the
    # champion's: {"category": "kettles", "price": {"lte": 50}} (components/index/search.py)
    filters: dict[str, Any] | None = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    trace_id: str  # the one the answer came with
    rating: Literal["up", "down"]
    correction: str | None = None  # the answer the customer expected
    comment: str | None = None


FEEDBACK_EXAMPLE = '{"trace_id": "tr-...", "rating": "down", "correction": "It costs 12 USD.", "comment": "old price"}'


def parse_feedback(payload: Any, config: ServeConfig) -> FeedbackIn:
    feedback = _validated(payload, FeedbackIn, FEEDBACK_EXAMPLE)
    if not feedback.trace_id.strip():
        raise RequestError(422, f"trace_id is empty; send the trace_id the answer came with, e.g. {FEEDBACK_EXAMPLE}")
    for key in ("correction", "comment"):
        text = getattr(feedback, key) or ""
        if len(text) > config.max_question_chars:
            raise RequestError(422, f"{key} is {len(text)} characters, over the limit of {config.max_question_chars} "
                                    f"(serve.max_question_chars); shorten it")
    return feedback


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    questions: list[QuestionIn]


def max_body_bytes(config: ServeConfig) -> int:
    """The largest body a valid request can need: a full batch of the longest questions, every
    character at its longest JSON spelling, plus room for the keys and filters."""
    return config.max_batch_size * (config.max_question_chars * BYTES_PER_CHAR + BYTES_PER_QUESTION_FIELDS) + BYTES_ENVELOPE


def check_headers(content_type: str | None, content_length: str | None, config: ServeConfig) -> None:
    """415 for a body that is not declared JSON, 413 for one declared too large (before reading it)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, got {content_type or 'none'!r}; "
                                f"send the body as JSON with the header 'Content-Type: application/json'")
    if content_length is not None:
        try:
            length = int(content_length)
        except ValueError:
            raise RequestError(400, f"Content-Length must be a number of bytes, got {content_length!r}") from None
        check_body_size(length, config)


def check_body_size(size: int, config: ServeConfig, declared: bool = True) -> None:
    """`declared`: `size` is the Content-Length, not the bytes read so far of a chunked body."""
    limit = max_body_bytes(config)
    if size > limit:
        size_text = f"{size} bytes" if declared else "larger than that"
        raise RequestError(413, f"request body is {size_text}, over the limit of {limit} bytes (room for "
                                f"serve.max_batch_size={config.max_batch_size} questions of "
                                f"serve.max_question_chars={config.max_question_chars} characters); "
                                f"send fewer or shorter questions")


# A valid request nests five levels ({"questions": [{"filters": {"price": {"lte": 50}}}]}); deeper
# ones are refused before validation, whose error messages would walk them.
MAX_DEPTH = 5


def parse_json(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(400, f"body is not valid JSON ({exc}); send a JSON object like {EXAMPLE}") from None
    except RecursionError:  # the parser recurses once per level: ~1,000 levels exhaust the stack
        raise RequestError(400, f"body nests arrays or objects over {MAX_DEPTH} levels deep; send a JSON object like "
                                f"{EXAMPLE}") from None
    if _depth(payload) > MAX_DEPTH:
        raise RequestError(400, f"body nests arrays or objects over {MAX_DEPTH} levels deep; send a JSON object like "
                                f"{EXAMPLE}")
    return payload


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed body (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _where(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _validation_message(exc: ValidationError, model: type[BaseModel], example: str) -> str:
    problems = []
    for error in exc.errors():
        where = _where(error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = model.model_fields if len(error["loc"]) == 1 else QuestionIn.model_fields
            problems.append(f"unknown field {where!r} (allowed: {', '.join(allowed)})")
        elif error["type"] == "missing":
            problems.append(f"field {where!r} is required")
        else:
            problems.append(f"field {where!r}: {error['msg'].lower()}, got {type(error['input']).__name__} "
                            f"{json.dumps(error['input'])[:40]}")
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more + f"; send e.g. {example}"


def _validated(payload: Any, model: type[BaseModel], example: str) -> Any:
    if not isinstance(payload, dict):
        raise RequestError(422, f"body must be a JSON object, got {type(payload).__name__}; send e.g. {example}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestError(422, _validation_message(exc, model, example)) from None


def check_question(item: QuestionIn, config: ServeConfig, where: str = "question") -> QuestionIn:
    if not item.question.strip():
        raise RequestError(422, f"{where} is empty; send the customer's question as text, e.g. {EXAMPLE}")
    if len(item.question) > config.max_question_chars:
        raise RequestError(422, f"{where} is {len(item.question)} characters, over the limit of "
                                f"{config.max_question_chars} (serve.max_question_chars); shorten the question")
    return item


def parse_question(payload: Any, config: ServeConfig) -> QuestionIn:
    """The body of /v1/answer and /v1/retrieve, checked; RequestError(422) names what is wrong."""
    return check_question(_validated(payload, QuestionIn, EXAMPLE), config)


def parse_batch(payload: Any, config: ServeConfig) -> list[QuestionIn]:
    """The body of /v1/answer/batch, checked; the batch size before the questions themselves."""
    questions = payload.get("questions") if isinstance(payload, dict) else None
    if isinstance(questions, list) and not 1 <= len(questions) <= config.max_batch_size:
        raise RequestError(422, f"questions holds {len(questions)} questions; one request takes 1 to "
                                f"{config.max_batch_size} (serve.max_batch_size); split them over several requests")
    batch = _validated(payload, BatchIn, BATCH_EXAMPLE)
    return [check_question(item, config, f"questions[{i}].question") for i, item in enumerate(batch.questions)]


def _filters(items: list[QuestionIn], fields: dict[str, str]) -> list[SearchFilters | None] | None:
    """Per question, the retrieval filters it asked for, on the champion's metadata fields (None
    when no question asked for any). A FilterError is the client's: a 422."""
    if not any(item.filters for item in items):
        return None
    return [SearchFilters.parse(item.filters, fields, "filters" if len(items) == 1 else f"questions[{i}].filters")
            if item.filters else None for i, item in enumerate(items)]


def answer_questions(assistant: Any, items: list[QuestionIn], stages: list[Stage] | None = None) -> list[dict]:
    """The bundle's answer dicts (what its pyfunc predict returns), without the DataFrame round trip."""
    filters = _filters(items, assistant.manifest.metadata_fields)
    return [asdict(a) for a in assistant.answer([item.question for item in items], filters=filters, stages=stages)]


@dataclass
class Answered:
    """Answers with what their traces are built from, once the model is free again."""

    answers: list[dict]
    stages: list[Stage]
    manifest: Manifest
    refusals: tuple[str, ...]  # the sentences the bundle declines with


def answer_traced(assistant: Any, items: list[QuestionIn]) -> Answered:
    stages: list[Stage] = []
    return Answered(answer_questions(assistant, items, stages), stages, assistant.manifest,
                    tuple(assistant.refusal_sentences))


def traced(version: str, answered: Answered) -> list[dict]:
    """Each answer with the id of its MLflow trace (None when it could not be traced)."""
    return with_trace_ids(answered.answers, answered.stages, answer_tags(answered.manifest, version), answered.refusals)


def route_and_retrieve(assistant: Any, item: QuestionIn) -> dict:
    """What an answer costs before generation (the latency evaluation's route+retrieve)."""
    filters = _filters([item], assistant.manifest.metadata_fields)
    ((route, confidence),) = assistant.route([item.question])
    (hits,) = assistant.retrieve([item.question], filters=filters)
    return {"route": route, "route_confidence": round(confidence, 4), "chunks": [asdict(h) for h in hits]}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_payload(request: Request, config: ServeConfig) -> Any:
    """The JSON body, refused by its headers before it is read, and read no further than the cap."""
    check_headers(request.headers.get("content-type"), request.headers.get("content-length"), config)
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        check_body_size(size, config, declared=False)  # a chunked body declares no length
        body += chunk
    return parse_json(bytes(body))


async def feedback_endpoint(request: Request, config: ServeConfig) -> JSONResponse:
    """A customer's rating of an answer, by its trace (no model work: never waits for answers)."""
    try:
        given = parse_feedback(await _read_payload(request, config), config)
        recorded = await run_in_threadpool(record_feedback, given.trace_id, given.rating, given.correction, given.comment)
    except RequestError as exc:
        return _error(exc.status, exc.message, {"Connection": "close"} if exc.status == 413 else None)
    except UnknownTrace as exc:
        return _error(404, str(exc))
    except Exception:  # noqa: BLE001 (the tracking store did not take it: say so, keep serving)
        log.exception("feedback on %s not recorded", given.trace_id)
        return _error(503, "the tracking store did not take the feedback; send it again later", {"Retry-After": "30"})
    return JSONResponse({"trace_id": given.trace_id, "recorded": recorded})


def _failed(request: Request, exc: Exception) -> JSONResponse:
    """The response to a model request that failed: its status and what to do."""
    if isinstance(exc, RequestError):
        # Refused without reading the rest of the body: close the connection instead of draining it.
        return _error(exc.status, exc.message, {"Connection": "close"} if exc.status == 413 else None)
    if isinstance(exc, FilterError):  # filters the champion's index has no field or operator for
        return _error(422, f"{exc}; send e.g. {FILTER_EXAMPLE}")
    if isinstance(exc, NotReady):
        return _error(503, str(exc))
    if isinstance(exc, Refused):  # the queue is full or the request timed out
        return _error(exc.status, exc.message, {"Retry-After": str(exc.retry_after)})
    # a 500 with a reference, the details only in the log
    reference = uuid.uuid4().hex[:12]
    log.error("%s %s failed (reference %s)", request.method, request.url.path, reference, exc_info=exc)
    return _error(500, f"internal error (reference {reference}); the server keeps running, its log has the "
                       f"details under that reference")


def create_app(holder: ChampionHolder, config: ServeConfig, keys: KeyRing | None = None) -> FastAPI:
    app = FastAPI(title="ragops", summary="The champion bundle of the store assistant", docs_url=None, redoc_url=None)
    guard_v1(app, keys, RateLimits(config))
    admission = Admission(config)
    batcher = AnswerBatcher(config, admission, holder.call, answer_traced, traced) if config.batch_answers else None

    async def model_endpoint(request: Request, parse: Callable[[Any, ServeConfig], Any], work: Callable[[Any, Any], Any],
                             then: Callable[[str, Any], dict] | None = None, batchable: bool = False) -> JSONResponse:
        """`work(assistant, request)` on the champion, then `then(version, result)` with the model free;
        an unfiltered /v1/answer joins the next batch instead (components/serving/batching.py)."""
        try:
            parsed = parse(await _read_payload(request, config), config)
            if batcher is not None and batchable and not parsed.filters:
                version, result = await batcher.submit(parsed)
            else:  # a worker thread: the event loop keeps serving /healthz and /readyz while the model works
                version, result = await admission.run(holder.call, lambda assistant: work(assistant, parsed))
                if then is not None:
                    result = await run_in_threadpool(then, version, result)
        except Exception as exc:  # noqa: BLE001 (the HTTP boundary: each failure its status, _failed)
            return _failed(request, exc)
        return JSONResponse({**result, "bundle_version": version})

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, body = holder.status()
        return JSONResponse({"ready": ready, **body, "traces_dropped": dropped_traces()},
                            status_code=200 if ready else 503)

    @app.post("/v1/answer")
    async def answer(request: Request) -> JSONResponse:
        return await model_endpoint(request, parse_question, lambda a, item: answer_traced(a, [item]),
                                    lambda version, answered: traced(version, answered)[0], batchable=True)

    @app.post("/v1/answer/batch")
    async def answer_batch(request: Request) -> JSONResponse:
        return await model_endpoint(request, parse_batch, answer_traced,
                                    lambda version, answered: {"answers": traced(version, answered)})

    @app.post("/v1/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        return await model_endpoint(request, parse_question, route_and_retrieve)

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        return await feedback_endpoint(request, config)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}; the endpoints are {ENDPOINTS}")

    return app


def serve_champion(config: ServeConfig, bundle_name: str, settings: Settings, host: str, port: int,
                   keys: KeyRing | None = None) -> None:
    """Serve until interrupted: one Weaviate server for every bundle, the reloader, uvicorn; with
    `keys`, every /v1 request needs one (`listen_host` decides where to listen without)."""
    import uvicorn

    from components.registry.tracking import configure_mlflow

    limit_export_retries()  # its answers are traced in the background
    registry = configure_mlflow(settings)
    holder = ChampionHolder(bundle_name, registry, poll_seconds=config.reload_poll_seconds)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it
    # found. With the default one SIGTERM would end the process there, before the bundles and the
    # Weaviate server are released: exit through the cleanup below instead.
    previous = {sig: signal.signal(sig, _exit_cleanly) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with bundle_weaviate(settings) as weaviate_env:
            log.info("bundles read Weaviate at %s; registry %s", redacted(weaviate_env.get("RAGOPS_WEAVIATE_URL")),
                     redacted(settings.tracking_uri))
            server = uvicorn.Server(uvicorn.Config(create_app(holder, config, keys), host=host, port=port,
                                                   log_level="info", timeout_graceful_shutdown=30))
            try:
                with champion_reloader(holder):
                    server.run()
            finally:
                holder.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)

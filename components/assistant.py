"""The assistant: route → retrieve → generate (its MLflow pyfunc, the bundle: components/registry/pyfunc.py).

A bundle version pins the router adapter, the generator adapter (with a reference to its
base model), the encoder, the *versioned* Weaviate collection, retrieval settings, the
prompt and the data versions. Serving loads `models:/<bundle>@champion`:

    >>> import mlflow, pandas as pd
    >>> bundle = mlflow.pyfunc.load_model("models:/ragops-assistant@champion")  # doctest: +SKIP
    >>> bundle.predict(pd.DataFrame({"question": ["How much is the Aurora ANC Headphones Edge?"]}))  # doctest: +SKIP
    [{'answer': 'The Aurora ANC Headphones Edge costs ... USD [p-001].', 'citations': ['p-001'], ...}]
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.config import GeneratorConfig, Params
from components.evaluation.memo import GenerationMemo
from components.index.embedding import Embedder, embed_texts, load_embedder
from components.index.search import Retrieved, SearchFilters, SearchMode, search
from components.memory import release_freed_memory
from components.models.answerability import AnswerabilityCheck, load_check
from components.models import ct2, ov_engine
from components.models.engine_cache import Engine, converted, weights_key
from components.models.generator import generate_answers, load_generator, load_tokenizer, set_lora_merged
from components.models.resolve import resolve_model
from components.models.router import load_router, predict_intents
from components.prompting import build_messages, extract_citations
from components.settings import Settings

# serve.inference_engine → what answers through it, what converts the generator for it, its version
ENGINES = {"openvino": Engine(ov_engine.OvGenerator, ov_engine.convert_folder, ov_engine.VERSION),
           "ctranslate2": Engine(ct2.Ct2Generator, ct2.convert_folder, ct2.VERSION)}


@dataclass(frozen=True)
class Manifest:
    """Everything a bundle version pins, stored as JSON inside the bundle."""

    encoder: str
    generator_base: str
    collection: str
    intents: list[str]
    top_k: int
    hybrid_alpha: float
    confidence_threshold: float
    fallback_intent: str
    system_prompt: str
    out_of_scope_reply: str
    max_new_tokens: int
    router_max_length: int
    router_version: str = ""
    generator_version: str = ""
    data_versions: dict[str, str] = field(default_factory=dict)
    # Bundles registered before these were params (router.retrieval_intents, fixed_reply_intents)
    # answered these intents so; their stored manifests lack the keys.
    retrieval_intents: list[str] = field(default_factory=lambda: ["catalog", "policy"])
    fixed_reply_intents: list[str] = field(default_factory=lambda: ["out_of_scope"])
    # The fields retrieval can filter on (index.metadata_fields); older bundles indexed the demo's.
    metadata_fields: dict[str, str] = field(default_factory=lambda: {"category": "text", "price": "number",
                                                                     "stock": "int"})
    # The refusal sentence the generator was trained on (generator.refusal_reply); older bundles
    # were trained on the default one.
    refusal_reply: str = GeneratorConfig.refusal_reply
    # What generates answers (serve.inference_engine); older bundles were evaluated with transformers.
    inference_engine: str = "transformers"
    # How many replicas a query asks (index.consistency_level); older bundles read at Weaviate's
    # default for searches.
    consistency_level: str = "ONE"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))

    @classmethod
    def from_params(cls, p: Params, collection: str, **pinned: Any) -> Manifest:
        """What params.yaml says a bundle serves with, on `collection`; `pinned`: the model
        versions and data versions of a registered bundle."""
        return cls(encoder=p.models.encoder, generator_base=p.models.generator, collection=collection,
                   intents=list(p.router.intents), top_k=p.index.top_k, hybrid_alpha=p.index.hybrid_alpha,
                   confidence_threshold=p.router.confidence_threshold, fallback_intent=p.router.fallback_intent,
                   system_prompt=p.generator.system_prompt, out_of_scope_reply=p.generator.out_of_scope_reply,
                   max_new_tokens=p.generator.max_new_tokens, router_max_length=p.router.max_length,
                   retrieval_intents=list(p.router.retrieval_intents),
                   fixed_reply_intents=list(p.router.fixed_reply_intents),
                   metadata_fields=dict(p.index.metadata_fields), refusal_reply=p.generator.refusal_reply,
                   inference_engine=p.serve.inference_engine, consistency_level=p.index.consistency_level, **pinned)


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[str]
    route: str
    route_confidence: float
    chunks: list[dict]
    # The answerability check's score (highest over the chunks that this chunk answers the
    # question); None where no check ran (no check in the bundle, or a route without retrieval).
    answerability: float | None = None


@dataclass(frozen=True)
class Stage:
    """One step of an `Assistant.answer` call (route, retrieve, check, generate): the questions it
    worked on, by index, and when it ran (epoch nanoseconds). A served answer's trace is built
    from them after the answer (components/registry/traces.py)."""

    name: str
    questions: tuple[int, ...]
    start_ns: int
    end_ns: int


@contextlib.contextmanager
def _timed(stages: list[Stage] | None, name: str, questions: Sequence[int]) -> Iterator[None]:
    start = time.time_ns()
    yield
    if stages is not None and questions:
        stages.append(Stage(name, tuple(questions), start, time.time_ns()))


@dataclass
class Assistant:
    manifest: Manifest
    router: Any
    router_tokenizer: Any
    generator: Any  # transformers' (base model + LoRA adapter), or None: loaded on first use (`_transformers`)
    generator_tokenizer: Any
    embedder: Embedder
    client: Any  # weaviate.WeaviateClient
    check: AnswerabilityCheck | None = None  # refuses before generation when no chunk answers the question
    # Evaluation only: answers generated before for the same inputs are taken from it (components/evaluation/memo.py)
    memo: GenerationMemo | None = None
    # What an inference engine's generator is built from (components/models/engine_cache.py): the
    # base model's folder, the adapter's (a registry download may be gone after loading: `ready`), the
    # cache of converted models and their keys there (use_adapter → key)
    base_path: str = ""
    generator_adapter: str = ""
    engine_cache: Path | None = None
    engine_keys: dict[bool, str] = field(default_factory=dict)
    # use_adapter → its engine's generator, built on first use ("transformers": the generator loaded late)
    engines: dict[bool | str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def refusal_sentences(self) -> tuple[str, ...]:
        """Every sentence this bundle declines with, as configured: the refusal sentence (its
        check's, and the one the generator was trained on) and the fixed reply of the
        `fixed_reply_intents`. Evaluation counts each as a refusal beside the usual phrasings, so
        a domain's own wording of either is never scored as an answer (nor a fixed reply to an
        answerable question as anything but a false refusal)."""
        sentences = [self.manifest.refusal_reply, self.manifest.out_of_scope_reply]
        if self.check is not None:
            sentences.append(self.check.refusal_reply)
        return tuple(dict.fromkeys(s for s in sentences if s.strip()))

    def route(self, questions: list[str]) -> list[tuple[str, float]]:
        m = self.manifest
        routed = predict_intents(self.router, self.router_tokenizer, questions, tuple(m.intents), m.router_max_length)
        return [(intent if conf >= m.confidence_threshold else m.fallback_intent, conf) for intent, conf in routed]

    def retrieve(self, questions: list[str], mode: SearchMode = "hybrid",
                 filters: list[SearchFilters | None] | None = None) -> list[list[Retrieved]]:
        vectors = embed_texts(self.embedder, questions, batch_size=32)
        filters = filters or [None] * len(questions)
        m = self.manifest
        return [search(self.client, m.collection, q, v, m.top_k, m.hybrid_alpha, mode, f, m.consistency_level)
                for q, v, f in zip(questions, vectors, filters, strict=True)]

    def generate(self, conversations: list[list[dict]], use_adapter: bool = True, progress: str | None = None) -> list[str]:
        """Greedy answers; `use_adapter=False` is the base model (the ablation and regression baselines).
        The adapter stays merged into the weights between calls (serving answers with it), and is
        taken out only for the base model. With a memo, only what it lacks is generated."""
        if self.memo is None:
            return self._generate(conversations, use_adapter, progress)
        keys = [self.memo.key(self._generator_identity(use_adapter), c) for c in conversations]
        if self.memo.carried is not None:  # latency: single requests, timed (GenerationMemo.timed)
            return [self.memo.timed(k, lambda c=c: self._generate([c], use_adapter, progress)[0])
                    for k, c in zip(keys, conversations)]
        part = (progress or "answers").removeprefix("evaluation: ")
        found = {i: self.memo.lookup(k, part) for i, k in enumerate(keys)}
        todo = [i for i, answer in found.items() if answer is None]
        for i, answer in zip(todo, self._generate([conversations[i] for i in todo], use_adapter, progress)):
            self.memo.record(keys[i], answer, part)
            found[i] = answer
        return [found[i] for i in range(len(conversations))]

    def _generator_identity(self, use_adapter: bool) -> str:
        """What decides an answer besides its conversation (the memo's key)."""
        m = self.manifest
        adapter = m.generator_version if use_adapter else "base"
        return f"{m.generator_base}|{adapter}|{m.max_new_tokens}|{self.device}|{self._engine_name}"

    @property
    def _engine_name(self) -> str:
        fast = self.manifest.inference_engine in ENGINES and self.device == "cpu"
        return self.manifest.inference_engine if fast and self.engine_cache is not None and self.engine_keys else "transformers"

    def _engine(self, use_adapter: bool) -> Any:
        """The inference engine's generator of the tuned (adapter merged) or the base model,
        converted once per adapter, base and engine version into the engine cache (a large model in a
        child process: converting holds ~2.5 GB more than answering)."""
        if use_adapter not in self.engines:
            # One of the two in memory at a time (~1.5 GB each for SmolLM2-135M through OpenVINO, its
            # key/value cache included): only the evaluation asks for both, in runs of each
            if self.engines.pop(not use_adapter, None) is not None:
                release_freed_memory()
            engine = ENGINES[self._engine_name]
            target = engine_target(self.engine_cache, self._engine_name, self.engine_keys[use_adapter])
            folder = converted(engine.convert_folder, self.base_path, self.generator_adapter if use_adapter else None, target)
            self.engines[use_adapter] = engine.generator(folder, self.generator_tokenizer)
        return self.engines[use_adapter]

    def ready(self) -> None:
        """Convert or load now what answering through the bundle's engine needs, while the
        adapter's folder is there: a bundle loaded from the registry reads it from a download that
        is removed once loaded (components/registry/loading.py)."""
        if self._engine_name in ENGINES:
            self._engine(True)
        else:
            self._transformers()

    def _transformers(self) -> Any:
        """The generator as transformers runs it, loaded on first use and shared with this
        assistant's copies (`dataclasses.replace`): answering through an inference engine never
        needs it, which keeps ~0.6 GB out of a server's and an evaluation's memory."""
        if self.generator is not None:
            return self.generator
        if "transformers" not in self.engines:
            self.engines["transformers"], _ = load_generator(self.generator_adapter, self.base_path, self.device)
        return self.engines["transformers"]

    def _generate(self, conversations: list[list[dict]], use_adapter: bool, progress: str | None) -> list[str]:
        if not conversations:
            return []
        if self._engine_name in ENGINES:
            return self._engine(use_adapter).generate(conversations, self.manifest.max_new_tokens)
        generator = self._transformers()
        set_lora_merged(generator, use_adapter)
        with contextlib.nullcontext() if use_adapter else generator.disable_adapter():
            return generate_answers(generator, self.generator_tokenizer, conversations,
                                    self.manifest.max_new_tokens, progress=progress)

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Every answer generated, none taken from the memo (what latency is measured on)."""
        memo, self.memo = self.memo, None
        try:
            yield
        finally:
            self.memo = memo

    def answer(self, questions: list[str], retrieved_all: list[list[Retrieved]] | None = None,
               filters: list[SearchFilters | None] | None = None, stages: list[Stage] | None = None,
               progress: str | None = None) -> list[Answer]:
        """`retrieved_all`: results of `retrieve(questions)` already at hand (evaluation has them).
        `filters`: per question, retrieval filters on the index's metadata fields. `stages`: a list
        that gets a Stage for each step taken (what a trace of the answers is built from).
        `progress`: a progress bar's name for the generation (evaluation's long calls)."""
        with _timed(stages, "route", range(len(questions))):
            routes = self.route(questions)
        needs_docs = [i for i, (r, _) in enumerate(routes) if r in self.manifest.retrieval_intents]
        with _timed(stages, "retrieve", needs_docs if retrieved_all is None else ()):
            hits = ([retrieved_all[i] for i in needs_docs] if retrieved_all is not None
                    else self.retrieve([questions[i] for i in needs_docs],
                                       filters=[filters[i] for i in needs_docs] if filters else None))
        retrieved: dict[int, list[Retrieved]] = dict(zip(needs_docs, hits))
        checked: dict[int, tuple[bool, float]] = {}
        if self.check is not None and needs_docs:
            with _timed(stages, "check", needs_docs):
                checked = dict(zip(needs_docs, self.check.answerable(
                    [questions[i] for i in needs_docs], [[c.text for c in retrieved[i]] for i in needs_docs])))
        refused = {i for i, (ok, _) in checked.items() if not ok}
        to_generate = [i for i, (r, _) in enumerate(routes)
                       if r not in self.manifest.fixed_reply_intents and i not in refused]
        conversations = [build_messages(questions[i], [(c.doc_id, c.text) for c in retrieved.get(i, [])],
                                        self.manifest.system_prompt) for i in to_generate]
        with _timed(stages, "generate", to_generate):
            generated = dict(zip(to_generate, self.generate(conversations, progress=progress)))
        answers = []
        for i, (route, conf) in enumerate(routes):
            chunks = retrieved.get(i, [])
            text = (self.check.refusal_reply if i in refused
                    else generated.get(i, self.manifest.out_of_scope_reply))
            shown = {c.doc_id for c in chunks}
            score = round(checked[i][1], 4) if i in checked else None
            answers.append(Answer(questions[i], text, [d for d in extract_citations(text) if d in shown], route,
                                  round(conf, 4), [asdict(c) for c in chunks], score))
        return answers


def engine_target(cache: Path, engine_name: str, key: str) -> Path:
    """Where the engine cache keeps the generator converted for `engine_name` (its key: engine_keys)."""
    return cache / engine_name / f"{ENGINES[engine_name].version}-{key}"


def load_assistant(manifest: Manifest, router_adapter: str, generator_adapter: str, settings: Settings,
                   client: Any, device: str = "cpu", convert: Sequence[bool] = (True,)) -> Assistant:
    """The bundle's models loaded. `convert`: which of the generator's forms for the inference engine
    (True: fine-tuned, False: the base model) are converted first where the engine cache lacks them,
    before the models load, so that a converting child process runs beside a small parent."""
    base_path = resolve_model(manifest.generator_base, settings.models_dir)
    cache = settings.home / "cache"
    keys = {True: weights_key(generator_adapter, base_path), False: weights_key(base_path)}
    if manifest.inference_engine in ENGINES and device == "cpu":
        for use_adapter in convert:
            converted(ENGINES[manifest.inference_engine].convert_folder, base_path,
                      generator_adapter if use_adapter else None,
                      engine_target(cache, manifest.inference_engine, keys[use_adapter]))
    encoder_path = resolve_model(manifest.encoder, settings.models_dir)
    router, router_tok = load_router(router_adapter, encoder_path, tuple(manifest.intents), device)
    return Assistant(manifest, router, router_tok, None, load_tokenizer(generator_adapter), load_embedder(encoder_path, device),
                     client, load_check(generator_adapter, device), base_path=base_path, generator_adapter=generator_adapter,
                     device=device, engine_cache=cache, engine_keys=keys)

"""The sections of params.yaml that `ragops serve` reads: its limits and the review queue of
what it served (sections.py has the pipeline's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.config.vocabulary import check


@dataclass(frozen=True)
class ServeConfig:
    """Limits and reload of `ragops serve` (where it listens is a command-line option)."""

    max_question_chars: int = 2000
    max_batch_size: int = 16
    reload_poll_seconds: float = 2.0  # how often the server checks where the champion alias points (one registry read)
    # What generates a bundle's answers, pinned in its manifest (evaluation runs what serving runs):
    # components/models/ov_engine.py, components/models/ct2.py
    inference_engine: Literal["openvino", "ctranslate2", "transformers"] = "openvino"
    # Per API key (with a key file; without, loopback only and no limit): a token bucket of
    # `rate_limit_burst` requests, refilled at `rate_limit_per_minute`; over it, 429 with Retry-After (0 = no limit).
    rate_limit_per_minute: float = 120.0
    rate_limit_burst: int = 20
    # Model requests waiting beside the one being answered; one more gets 503 with Retry-After
    # instead of a wait without bound. A request still waiting or working after the timeout: 503.
    max_waiting: int = 32
    request_timeout_seconds: float = 120.0
    # Concurrent /v1/answer requests answered in one generate call (up to max_batch_size): what
    # arrives while the model is busy, or within batch_window_ms of an idle one
    batch_answers: bool = True
    batch_window_ms: float = 5.0

    def __post_init__(self) -> None:
        check(self.max_question_chars > 0, "serve.max_question_chars", f"must be > 0, got {self.max_question_chars}")
        check(self.max_batch_size > 0, "serve.max_batch_size", f"must be > 0, got {self.max_batch_size}")
        check(self.reload_poll_seconds > 0, "serve.reload_poll_seconds",
               f"must be > 0, got {self.reload_poll_seconds}")
        check(self.rate_limit_per_minute >= 0, "serve.rate_limit_per_minute",
              f"must be >= 0 (0 = no limit), got {self.rate_limit_per_minute}")
        check(self.rate_limit_burst >= 1, "serve.rate_limit_burst", f"must be >= 1, got {self.rate_limit_burst}")
        check(self.max_waiting >= 0, "serve.max_waiting", f"must be >= 0, got {self.max_waiting}")
        check(self.batch_window_ms >= 0, "serve.batch_window_ms", f"must be >= 0, got {self.batch_window_ms}")
        check(self.request_timeout_seconds > 0, "serve.request_timeout_seconds",
              f"must be > 0, got {self.request_timeout_seconds}")


@dataclass(frozen=True)
class FeedbackConfig:
    """What the review queue of served answers (`ragops feedback review`) puts before a human
    besides down-votes, corrections, refusals and unsure routes, and how accepted items are harvested."""

    # A top retrieval score under this is weak retrieval (benchmarks/retrieval_scores.py: 0.7 flags a
    # third of the golden questions the documents cannot answer, and 0-2% of those they answer).
    weak_retrieval_score: float = 0.7
    # Harvested items that trigger a retrain (the `ragops.feedback.harvested` event) once this many
    # have accumulated since the last one; 0 = never (the schedule retrains).
    retrain_after_items: int = 20
    # Where a phone number in a harvested text is recognised as one (ISO 3166 region codes).
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "IN")

    def __post_init__(self) -> None:
        check(0.0 <= self.weak_retrieval_score <= 1.0, "feedback.weak_retrieval_score",
              f"must be in [0, 1] (0 = off), got {self.weak_retrieval_score}")
        check(self.retrain_after_items >= 0, "feedback.retrain_after_items", f"must be >= 0, got {self.retrain_after_items}")
        check(all(len(r) == 2 and r.isalpha() and r.isupper() for r in self.phone_regions), "feedback.phone_regions",
              f"must be two-letter ISO 3166 region codes like 'US', got {list(self.phone_regions)}")

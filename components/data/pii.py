"""Personal data out of harvested feedback: e-mail addresses, phone numbers and card numbers in a
customer's question or correction are replaced by a placeholder (`<EMAIL_ADDRESS>`,
`<PHONE_NUMBER>`, `<CREDIT_CARD>`) before anything reaches the data.

Detection is Presidio's (Microsoft's de-identification SDK): its pattern recognizers, not its NER
models, so nothing is downloaded and no spaCy model is needed. Phone numbers are found by Google's
phonenumbers library in the regions of `feedback.phone_regions`; card numbers must pass the Luhn
check (an order number or a price is left alone); an e-mail address needs a known top-level domain
(read from tldextract's bundled list: it never fetches one).

    >>> scrub("Mail me at ana@example.com")  # doctest: +SKIP
    Scrubbed(text='Mail me at <EMAIL_ADDRESS>', found=['EMAIL_ADDRESS'])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from components.config import FeedbackConfig


@dataclass(frozen=True)
class Scrubbed:
    text: str
    found: list[str]  # the entity types replaced, one per occurrence


@functools.cache
def _recognizers(regions: tuple[str, ...]) -> tuple:
    import tldextract
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, PhoneRecognizer

    offline = tldextract.TLDExtract(suffix_list_urls=())  # the bundled public-suffix list, no fetch

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer with its domain check offline (its default fetches the list)."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text).fqdn != ""

    return OfflineEmailRecognizer(), PhoneRecognizer(supported_regions=regions), CreditCardRecognizer()


@functools.cache
def _anonymizer():
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


def scrub(text: str, regions: Sequence[str] = FeedbackConfig.phone_regions, published: Sequence[str] = ()) -> Scrubbed:
    """`text` with every e-mail address, phone number and card number replaced by `<ENTITY_TYPE>`,
    except those that `published` texts (the documents an answer cites) state themselves: the
    store's own hotline is not personal data."""
    if not text:
        return Scrubbed(text, [])
    found = [hit for recognizer in _recognizers(tuple(regions))
             for hit in recognizer.analyze(text, entities=list(recognizer.supported_entities), nlp_artifacts=None)
             if not any(text[hit.start:hit.end] in source for source in published)]
    if not found:
        return Scrubbed(text, [])
    result = _anonymizer().anonymize(text=text, analyzer_results=found)
    return Scrubbed(result.text, sorted(item.entity_type for item in result.items))

"""Serving: `ragops serve` (the HTTP app) and the champion it follows."""

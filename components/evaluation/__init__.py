"""Evaluation: metrics, the evaluation of a bundle on the golden set (freshness probes, prompt
injection, ablation) and the promotion gates."""

"""ragops components: one module per concern, pure typed functions, no work at import."""

"""Models: resolving a model reference to a local folder, and loading and running the router, the
generator and the answerability check (inference only)."""

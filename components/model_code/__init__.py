"""MLflow models-from-code: each module names the pyfunc a registered model loads, so a version
stores a reference to ragops' code instead of a pickled object (see components/registry.py)."""

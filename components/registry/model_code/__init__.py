"""MLflow models-from-code: each module names the pyfunc a registered model loads, so a version
stores a reference to ragops' code instead of a pickled object (see components/registry/tracking.py).

MLflow copies the module into each version's artifacts, and `mlflow.pyfunc.load_model` (so `mlflow
models serve`) executes that copy: whoever can write to the registry or its artifact store chooses
the code it runs. ragops' own loader (components/registry/loading.py, used by `ragops serve` and `ragops
ask`) never executes it; it only reads which of these modules a version names."""

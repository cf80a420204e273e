"""Registry: MLflow tracking and model registration, the pyfunc models and their model code, loading
a registered version, reuse by fingerprint, promotion and its ledger."""

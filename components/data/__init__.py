"""Data: curation (the dvc.yaml `curate` stage), DVC versioning, validation (Great Expectations) and
the document watcher."""

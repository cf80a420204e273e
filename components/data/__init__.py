"""Data: curation (the dvc.yaml `curate` stage) and DVC versioning."""

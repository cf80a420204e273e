"""Reporting: what reviewers read, the model-version descriptions, the bundle report and the charts."""

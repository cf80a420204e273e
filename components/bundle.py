"""Kept for bundle versions registered before components/ was split by concern: their model code
(run by `mlflow models serve`, never by ragops) imports BundleModel from here."""

from components.registry.pyfunc import BundleModel

__all__ = ["BundleModel"]

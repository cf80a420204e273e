"""Kept for router and generator versions registered before components/ was split by concern:
their model code (run by `mlflow models serve`, never by ragops) imports the pyfuncs from here."""

from components.registry.pyfunc import GeneratorPyfunc, RouterPyfunc

__all__ = ["GeneratorPyfunc", "RouterPyfunc"]

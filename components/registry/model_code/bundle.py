"""The bundle pyfunc (route → retrieve → generate), logged as code."""

import mlflow

from components.registry.pyfunc import BundleModel

mlflow.models.set_model(BundleModel())

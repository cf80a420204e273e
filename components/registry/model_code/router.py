"""The router pyfunc, logged as code."""

import mlflow

from components.registry.pyfunc import RouterPyfunc

mlflow.models.set_model(RouterPyfunc())

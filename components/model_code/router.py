"""The router pyfunc, logged as code."""

import mlflow

from components.pyfunc_models import RouterPyfunc

mlflow.models.set_model(RouterPyfunc())

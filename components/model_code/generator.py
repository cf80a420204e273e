"""The generator pyfunc, logged as code."""

import mlflow

from components.pyfunc_models import GeneratorPyfunc

mlflow.models.set_model(GeneratorPyfunc())

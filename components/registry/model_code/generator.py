"""The generator pyfunc, logged as code."""

import mlflow

from components.registry.pyfunc import GeneratorPyfunc

mlflow.models.set_model(GeneratorPyfunc())

"""Configuration: params.yaml → frozen typed dataclasses (where services live and their
secrets: components/settings.py). This package's face: the names below are its whole interface;
vocabulary.py holds the names params may use, sections.py the sections (serving.py those of
`ragops serve`), loading.py the loader.

params.yaml holds every knob of the pipeline, grouped by stage, loaded once at the entry point:

    >>> from components.config import load_params
    >>> params = load_params("params.yaml")
    >>> params.router.lora_r
    8

An unknown key, a wrong type or an impossible combination raises ConfigError naming the key
and the fix, before any work starts. A key left out of params.yaml takes its section's default,
which is the value the shipped params.yaml writes (tests/unit/test_config.py holds the two
equal), so deleting a line never changes what a run does.
"""

from components.config.loading import load_params, params_as_dict, parse_params
from components.config.sections import (DataConfig, EvaluationConfig, FeedbackConfig, GeneratorConfig, IndexConfig,
                                        ModelsConfig, OrchestrationConfig, Params, ProjectConfig, PromotionConfig,
                                        RouterConfig, ScheduleConfig, ServeConfig)
from components.config.vocabulary import (FIELD_TYPES, FIELD_VALUE_NAMES, GATED_METRICS, HIGHER_IS_BETTER, INTENTS,
                                          LOWER_IS_BETTER, PAIRED_METRICS, STEPS, ConfigError, fits_field_type)

__all__ = ["ConfigError", "DataConfig", "EvaluationConfig", "FIELD_TYPES", "FeedbackConfig", "FIELD_VALUE_NAMES", "GATED_METRICS",
           "GeneratorConfig", "HIGHER_IS_BETTER", "INTENTS", "IndexConfig", "LOWER_IS_BETTER", "ModelsConfig",
           "OrchestrationConfig", "PAIRED_METRICS", "Params", "ProjectConfig", "PromotionConfig", "RouterConfig",
           "STEPS", "ScheduleConfig", "ServeConfig", "fits_field_type", "load_params", "params_as_dict", "parse_params"]

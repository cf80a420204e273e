"""params.yaml → frozen config: defaults, strictness, errors that name the key and the fix."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, Params, load_params, parse_params
from components.settings import Settings, redacted, scrubbed

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_shipped_params_load_into_frozen_config():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.router.intents == ("catalog", "policy", "small_talk", "out_of_scope")
    with pytest.raises(AttributeError):
        params.router.lora_r = 4  # frozen


def test_missing_sections_take_defaults():
    assert parse_params({}) == Params()


def test_params_yaml_writes_every_default_and_the_code_takes_the_same():
    """params.yaml is where a user reads the defaults: every key is written there, with the value a
    run takes when the line is deleted (the code's default), so deleting a line changes nothing."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    shipped, defaults = load_params(ROOT / "params.yaml"), Params()
    unwritten, differ = [], {}
    for section in dataclasses.fields(Params):  # sections of flat keys
        for key in dataclasses.fields(getattr(defaults, section.name)):
            value, default = (getattr(getattr(config, section.name), key.name) for config in (shipped, defaults))
            if key.name not in (raw.get(section.name) or {}):
                unwritten.append(f"{section.name}.{key.name}")
            elif value != default:
                differ[f"{section.name}.{key.name}"] = (value, default)
    assert unwritten == [], f"keys params.yaml does not write: {unwritten}"
    assert differ == {}, f"params.yaml value vs the code's default: {differ}"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"router": {"lr": 0.1}}, "unknown key 'router.lr'"),
        ({"routerr": {}}, "unknown key 'routerr'"),
        ({"router": {"lora_r": "eight"}}, "router.lora_r must be int"),
        ({"router": {"lora_r": 0}}, "router.lora_r must be > 0"),
        ({"generator": {"target_modules": "q_proj"}}, "generator.target_modules must be a list"),
        ({"index": {"chunk_words": 50, "chunk_overlap_words": 50}}, "index.chunk_overlap_words"),
        ({"router": {"fallback_intent": "sales"}}, "router.fallback_intent must be one of"),
        ({"evaluation": {"gates": {"accuracy": 0.5}}}, "evaluation.gates.accuracy is not a metric"),
        ({"evaluation": {"gates": {"key_fact_accuracy": 1.5}}}, "must be a number in [0, 1]"),
        ({"evaluation": {"gates": {"latency_answer_p95_ms": 0}}}, "is a maximum in milliseconds and must be > 0"),
        ({"evaluation": {"non_inferiority": {"router_macro_f1": 0.05}}}, "needs a per-question metric to pair"),
        ({"evaluation": {"non_inferiority": {"key_fact_accuracy": 2}}}, "must be a margin in [0, 1]"),
        ({"evaluation": {"freshness_probes": 0, "gates": {"freshness_answer": 0.8}}}, "needs evaluation.freshness_probes > 0"),
        ({"evaluation": {"freshness_probes": 2}}, "evaluation.min_samples.freshness_retrieval asks for more probes"),
        ({"evaluation": {"min_samples": {"key_fact_accuracy": -1}}}, "must be a whole number >= 0"),
        ({"index": {"keep_versions": 1}}, "index.keep_versions"),
        ({"router": {"lora_r": True}}, "router.lora_r must be int"),
        ({"router": {"method": "qlora"}}, "router.method must be one of"),
        ({"router": {"method": "full", "learning_rate": 0.002}}, "use about 5e-5 for full fine-tuning"),
        ({"generator": {"holdout_examples": 0}}, "set generator.holdout_examples > 0 or the patience to 0"),
        ({"generator": {"max_steps": 4, "warmup_steps": 8}}, "generator.warmup_steps must be in [0, generator.max_steps=4]"),
        ({"generator": {"planted_instructions": 1.5}}, "generator.planted_instructions must be a share in [0, 1]"),
        ({"feedback": {"retrain_after_items": -1}}, "feedback.retrain_after_items must be >= 0"),
        ({"feedback": {"phone_regions": ["usa"]}}, "feedback.phone_regions must be two-letter ISO 3166 region codes"),
    ],
)
def test_bad_values_name_the_key(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert fragment in str(err.value)


def test_int_is_accepted_where_float_is_declared():
    assert parse_params({"generator": {"learning_rate": 1}}).generator.learning_rate == 1.0


def test_error_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"data": {"min_doc_chars": -1}}))
    with pytest.raises(ConfigError, match=rf"{path}: data.min_doc_chars"):
        load_params(path)


def test_invalid_yaml_is_reported(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("router: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_settings_default_to_embedded_services(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGOPS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RAGOPS_HOME", str(tmp_path))
    settings = Settings()
    assert settings.weaviate_url is None
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_settings_read_services_and_hide_secrets(monkeypatch):
    monkeypatch.setenv("RAGOPS_WEAVIATE_URL", "http://weaviate:8080")
    monkeypatch.setenv("RAGOPS_WEAVIATE_API_KEY", "s3cret")
    monkeypatch.setenv("RAGOPS_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    settings = Settings()
    assert settings.weaviate_url == "http://weaviate:8080"
    assert settings.tracking_uri == "http://mlflow:5000"
    assert "s3cret" not in repr(settings)


def test_passwords_in_urls_are_never_shown_and_weaviate_refuses_them(tmp_path):
    from components.index.store import WeaviateIndexError, connect_weaviate
    from components.registry.tracking import _without_credentials

    assert redacted("https://alice:pl4nted@host:9000/dvc") == "https://alice:***@host:9000/dvc"
    assert redacted("http://mlflow:5000") == "http://mlflow:5000"
    assert scrubbed("push to https://alice:pl4nted@host failed", "https://alice:pl4nted@host") == \
        "push to https://alice:***@host failed"
    with pytest.raises(WeaviateIndexError) as refused:  # Weaviate takes an API key, never URL credentials
        with connect_weaviate(Settings(home=tmp_path, weaviate_url="http://bob:pl4nted@127.0.0.1:1")):
            pass
    assert "pl4nted" not in str(refused.value) and "RAGOPS_WEAVIATE_API_KEY" in str(refused.value)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "RAGOPS_WEAVIATE_API_KEY").write_text("from-a-file")
    assert Settings(_secrets_dir=tmp_path / "secrets").weaviate_api_key.get_secret_value() == "from-a-file"
    assert _without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_orchestration_timeouts_naming_some_steps_keep_the_others():
    params = parse_params({"orchestration": {"timeout_minutes": {"train_generator": 30}}})
    assert params.orchestration.timeout_minutes["train_generator"] == 30
    assert params.orchestration.timeout_minutes["evaluate"] == Params().orchestration.timeout_minutes["evaluate"]
    with pytest.raises(ConfigError, match="orchestration.timeout_minutes.train is not a step"):
        parse_params({"orchestration": {"timeout_minutes": {"train": 30}}})


@pytest.mark.parametrize("schedule, key", [
    ({"retrain_cron": "61 * * * *"}, "schedule.retrain_cron"),
    ({"retrain_cron": "every night"}, "schedule.retrain_cron"),
    ({"harvest_cron": "every night"}, "schedule.harvest_cron"),
    ({"timezone": "Mars/Olympus"}, "schedule.timezone"),
])
def test_bad_schedules_name_the_key(schedule, key):
    with pytest.raises(ConfigError, match=key):
        parse_params({"schedule": schedule})


def test_an_empty_cron_means_on_demand_only():
    assert parse_params({"schedule": {"retrain_cron": ""}}).schedule.retrain_cron == ""

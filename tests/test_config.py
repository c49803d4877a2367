"""Config files: every setting documented in conf/default.yaml, clear errors, --set overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsir_spark.config import (
    ConfigError,
    DatasetConfig,
    FeatureConfig,
    FitConfig,
    ResampleConfig,
    RunConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)

CONF = Path(__file__).parent.parent / "conf"


def test_default_yaml_lists_every_setting_with_the_reference_defaults():
    data = yaml.safe_load((CONF / "default.yaml").read_text())
    config = config_from_dict(data)
    for section, cls in [("features", FeatureConfig), ("fit", FitConfig), ("resample", ResampleConfig)]:
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
        assert getattr(config, section) == cls(), f"{section} defaults differ from the dataclass"
    assert set(data["raw"]) == {f.name for f in dataclasses.fields(DatasetConfig)}
    assert set(data) == {f.name for f in dataclasses.fields(RunConfig)}
    assert config.features == FeatureConfig(ngrams=2, num_buckets=10000, hash="sha256")
    assert config.fit.num_tokens_to_fit == "auto" and config.resample.min_example_length == 100


def test_every_shipped_config_loads():
    for path in CONF.glob("*.yaml"):
        load_config(str(path))


def test_overrides_are_parsed_as_yaml(tmp_path):
    config = load_config(str(CONF / "sample.yaml"),
                         ["resample.seed=7", "fit.num_tokens_to_fit=5000", "resample.top_k=true", "run_dir=/x"])
    assert config.resample.seed == 7 and config.resample.top_k is True
    assert config.fit.num_tokens_to_fit == 5000 and config.run_dir == "/x"


@pytest.mark.parametrize("change,message", [
    ({"resample": {"num_to_sampel": 3}}, r"unknown setting resample.num_to_sampel; did you mean "
                                          r"resample.num_to_sample\? known settings here: \['add_dsir_columns'"),
    ({"features": {"num_buckets": "many"}}, r"features.num_buckets: expected an integer, got 'many'"),
    ({"resample": {"top_k": "yes"}}, r"resample.top_k: expected true or false"),
    ({"fit": {"num_tokens_to_fit": "some"}}, r"fit.num_tokens_to_fit"),
    ({"targets": []}, r"targets is empty"),
    ({"raw": {"paths": ["a"], "colour": 1}}, r"unknown setting raw.colour; known settings here"),
    ({"features": {"ngrams": 0}}, r"features.ngrams=0; it must be >= 1"),
])
def test_bad_settings_name_the_setting(change, message):
    data = yaml.safe_load((CONF / "sample.yaml").read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_dir: x\nraw: {paths: [a]}\ntargets: [{paths: [b]}]\nfeatures: {hashh: sha256}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown setting features.hashh"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing.yaml"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"--set 'oops': write it as section.key=value"):
        apply_overrides({}, ["oops"])


def test_target_proportions_must_match_the_targets():
    data = yaml.safe_load((CONF / "sample.yaml").read_text())
    data["fit"] = {"separate_targets": True, "target_proportions": [0.5, 0.5]}
    with pytest.raises(ConfigError, match=r"target_proportions has 2 values for 1 targets"):
        config_from_dict(data)


# ---------------------------------------------------------------------------------------------- --set and YAML


@pytest.mark.parametrize("override,message", [
    ("targets.5.text_col=x", "--set 'targets.5.text_col=x': targets has 1 entry, so indexes 0 to 0; there is no "
                             "targets.5"),
    ("targets.0=foo", "--set 'targets.0=foo': targets[0]: expected a mapping of settings, got 'foo'"),
    ("targets.x.text_col=1", "--set 'targets.x.text_col=1': targets is a list; index it with a number"),
    ("resample.seed=abc", "--set 'resample.seed=abc': resample.seed: expected an integer, got 'abc'"),
    ("resample.num_to_sample=-1", "--set 'resample.num_to_sample=-1': resample.num_to_sample=-1; it must be >= 0"),
    ("resample.seed.x=1", "--set 'resample.seed.x=1': resample.seed is a single value (0), not a section"),
    ("run_dir.x=2", "--set 'run_dir.x=2': run_dir is a single value"),
    ("=5", "--set '=5': the setting name is empty"),
    ("a..b=1", "--set 'a..b=1': the setting name is empty or has an empty part"),
    ("nope", "--set 'nope': write it as section.key=value"),
    ("features.ngrams=[", "--set 'features.ngrams=[': the value is not valid YAML"),
    ("zzz.y=1", "--set 'zzz.y=1': unknown setting zzz"),
    ("raw=5", "--set 'raw=5': raw: expected a mapping of settings, got 5"),
])
def test_a_malformed_override_is_one_line_that_names_it(override, message, capsys):
    with pytest.raises(ConfigError) as error:
        load_config(str(CONF / "sample.yaml"), [override])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    from dsir_spark.cli import main

    assert main(["run", "--config", str(CONF / "sample.yaml"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dsir-spark: config error: {message}") and err.count("\n") == 1


def test_a_file_mistake_is_blamed_on_the_file_and_an_override_on_the_override(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONF / "sample.yaml").read_text().replace("seed: 0", "seed: zero"))
    with pytest.raises(ConfigError, match=rf"^{bad}: resample.seed: expected an integer"):
        load_config(str(bad), ["resample.num_to_sample=5"])
    with pytest.raises(ConfigError, match=r"^--set 'features.ngrams=0': features.ngrams=0"):
        load_config(str(CONF / "sample.yaml"), ["resample.seed=3", "features.ngrams=0"])


@given(st.lists(st.text(max_size=40), max_size=4))
@settings(max_examples=300, deadline=None)
def test_random_overrides_never_end_in_a_traceback(overrides):
    try:
        load_config(str(CONF / "sample.yaml"), overrides)
    except ConfigError as error:
        assert str(error).strip()


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.dates(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["run_dir", "raw", "targets", "paths", "text_col", "features", "ngrams", "fit", "resample",
                         "num_to_sample", "score", "table", "report", "label_col", "x"]) | st.integers(), children,
        max_size=4),
    max_leaves=12,
)


@given(YAML_VALUES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_yaml_documents_never_end_in_a_traceback(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        load_config(str(path))
    except ConfigError as error:
        assert str(error).strip()


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_text_as_a_config_file_never_ends_in_a_traceback(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("text") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(str(path))
    except ConfigError as error:
        assert str(error).strip() and "\n" not in str(error)


@pytest.mark.parametrize("raw,run_dir,message", [
    ("{tmp}/data", "{tmp}/data/run", "run_dir {tmp}/data/run is inside {tmp}/data, an input of dataset raw"),
    ("{tmp}/data/", "{tmp}/data", "run_dir {tmp}/data is inside {tmp}/data/, an input of dataset raw"),
    ("{tmp}/data/*.jsonl", "{tmp}/data/runs/x", "run_dir {tmp}/data/runs/x is inside {tmp}/data/*.jsonl"),
    ("file:{tmp}/data", "{tmp}/data/run", "is inside file:{tmp}/data, an input of dataset raw"),
    ("{tmp}/run/raw.jsonl", "{tmp}/run", "dataset raw: {tmp}/run/raw.jsonl is inside run_dir {tmp}/run"),
    ("{tmp}/run/scores", "{tmp}/run/", "dataset raw: {tmp}/run/scores is inside run_dir {tmp}/run/"),
])
def test_a_run_directory_nested_in_an_input_is_refused(tmp_path, raw, run_dir, message):
    data = {"run_dir": run_dir.format(tmp=tmp_path), "raw": {"paths": [raw.format(tmp=tmp_path)]},
            "targets": [{"paths": ["target.jsonl"]}]}
    with pytest.raises(ConfigError, match=re.escape(message.format(tmp=tmp_path))):
        config_from_dict(data)


@pytest.mark.parametrize("raw,run_dir", [
    ("{tmp}/data/raw.jsonl", "{tmp}/data/run"),      # a file beside the run directory
    ("{tmp}/data", "{tmp}/data-run"),                # a sibling whose name starts alike
    ("table:corpus.pile", "{tmp}/run"),
    ("s3://bucket/corpus/", "s3://bucket/runs/x"),
])
def test_run_directories_beside_their_inputs_are_fine(tmp_path, raw, run_dir):
    config_from_dict({"run_dir": run_dir.format(tmp=tmp_path), "raw": {"paths": [raw.format(tmp=tmp_path)]},
                      "targets": [{"paths": ["target.jsonl"]}]})

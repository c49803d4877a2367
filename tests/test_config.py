"""Config files: every setting documented in conf/default.yaml, clear errors, --set overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

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
    ({"resample": {"num_to_sampel": 3}}, r"unknown setting resample.num_to_sampel"),
    ({"features": {"num_buckets": "many"}}, r"features.num_buckets: expected an integer, got 'many'"),
    ({"resample": {"top_k": "yes"}}, r"resample.top_k: expected true or false"),
    ({"fit": {"num_tokens_to_fit": "some"}}, r"fit.num_tokens_to_fit"),
    ({"targets": []}, r"targets is empty"),
    ({"raw": {"paths": ["a"], "colour": 1}}, r"unknown setting raw.colour"),
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

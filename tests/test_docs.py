"""The documentation cannot fall behind the code: every setting of ``dsir_spark.config`` (and of
conf/default.yaml) has a row in docs/configuration.md with its real default, no row names a setting that
does not exist, the README stays a front door, and its quick start is the one CI runs."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import yaml

from dsir_spark import config as config_module
from dsir_spark.config import DatasetConfig, RunConfig

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "configuration.md"
# | `section.key` | type | default | meaning |
ROW = re.compile(r"^\| `([a-z_.\[\]]+)` \| ([^|]+) \| ([^|]+) \|", re.M)


def _nested(annotation: str) -> type | None:
    """The config dataclass an annotation holds (``ShardConfig | None``, ``tuple[GroupCap, ...]``), if any."""
    for name in re.findall(r"[A-Z][A-Za-z]+", annotation):
        candidate = getattr(config_module, name, None)
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _yaml(value: object) -> str:
    """A default as the reference page writes it: YAML's spelling, in back quotes."""
    if isinstance(value, tuple):
        value = list(value)
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() + "`"


def settings(cls: type = RunConfig, prefix: str = "") -> dict[str, str]:
    """Every setting's dotted name -> its default as written in the page (``required`` where none)."""
    found: dict[str, str] = {}
    hints = typing.get_type_hints(cls, vars(config_module))
    for spec in dataclasses.fields(cls):
        name = prefix + spec.name
        nested = _nested(str(hints[spec.name]))
        if spec.default is not dataclasses.MISSING:
            default = _yaml(spec.default)
        elif spec.default_factory is not dataclasses.MISSING:
            default = "" if nested and spec.default_factory is nested else _yaml(spec.default_factory())
        else:
            default = "required"
        if nested is DatasetConfig:
            found[name] = default
            found.update(settings(DatasetConfig, ("raw" if name == "raw" else "targets[]") + "."))
        elif nested is not None:
            if default:  # an optional section or a list of them: a row of its own
                found[name] = default
            found.update(settings(nested, name + ("[]." if default == "`[]`" else ".")))
        else:
            found[name] = default
    return found


def documented() -> dict[str, tuple[str, str]]:
    return {name: (kind.strip(), default.strip()) for name, kind, default in ROW.findall(REFERENCE.read_text())}


def test_every_setting_is_in_the_configuration_reference_with_its_default():
    rows = documented()
    missing = sorted(set(settings()) - set(rows))
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"
    wrong = {name: (rows[name][1], default) for name, default in settings().items() if rows[name][1] != default}
    assert wrong == {}, "docs/configuration.md default (page, code): " + repr(wrong)


def test_the_configuration_reference_names_no_setting_that_does_not_exist():
    stale = sorted(set(documented()) - set(settings()))
    assert stale == [], f"docs/configuration.md documents settings the code does not have: {stale}"


def _yaml_keys(node: object, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            name = prefix + key
            if not isinstance(value, dict) or name == "raw":  # a section is no setting; raw is a dataset
                keys.add(name)
            if key in ("raw",) and isinstance(value, dict):
                keys |= _yaml_keys(value, "raw.")
            elif isinstance(value, dict):
                keys |= _yaml_keys(value, name + ".")
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                keys |= _yaml_keys(value[0], ("targets[]" if key == "targets" else name + "[]") + ".")
    return keys


def _optional_part(name: str) -> bool:
    return name.startswith(("resample.shards.", "resample.group_caps[]."))


def test_conf_default_yaml_lists_settings_that_exist_with_the_code_defaults():
    default_yaml = yaml.safe_load((ROOT / "conf" / "default.yaml").read_text())
    known = settings()
    unknown = sorted(_yaml_keys(default_yaml) - set(known))
    assert unknown == [], f"conf/default.yaml has keys the code does not: {unknown}"
    # Sections and settings, not examples: run_dir, paths and dataset names are the user's.
    examples = {"run_dir", "raw", "targets", "raw.paths", "raw.name", "targets[].paths", "targets[].name"}
    flat = {}
    for key in _yaml_keys(default_yaml) - examples:
        node = default_yaml
        for part in key.replace("[]", ".0").split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        if not isinstance(node, dict):
            flat[key] = node
    differ = {key: (value, known[key]) for key, value in flat.items()
              if known[key] == "required" or value != yaml.safe_load(known[key].strip("`"))}
    assert differ == {}, "conf/default.yaml value (yaml, code): " + repr(differ)
    # The keys of an optional section (shards, group caps) are shown in the comment beside it.
    text = (ROOT / "conf" / "default.yaml").read_text()
    undocumented = sorted(name for name in known if name not in _yaml_keys(default_yaml)
                          and not (_optional_part(name) and f"{name.rsplit('.', 1)[-1]}:" in text))
    assert undocumented == [], f"settings missing from conf/default.yaml: {undocumented}"


def test_the_check_notices_a_setting_left_out(tmp_path):
    rows = documented()
    assert "resample.num_to_sample" in rows and "features.num_buckets" in rows
    assert rows["features.num_buckets"][1] == "`10000`"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the detail belongs in docs/"


def quick_start() -> list[str]:
    """The README's quick-start commands: the first shell block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_quick_start_as_written():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = quick_start()
    assert len(commands) == 2
    for command in commands:
        assert command in ci, f"CI does not run the README's quick-start command as written: {command}"


def test_the_databricks_bundle_runs_this_package_with_a_valid_config():
    import tomllib

    from dsir_spark.config import load_config

    folder = ROOT / "examples" / "databricks"
    bundle = yaml.safe_load((folder / "databricks.yml").read_text())
    task = bundle["resources"]["jobs"]["dsir_selection"]["tasks"][0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wheel_task = task["python_wheel_task"]
    assert wheel_task["entry_point"] in project["scripts"]
    assert wheel_task["package_name"] == project["name"].replace("-", "_")
    assert wheel_task["parameters"][:2] == ["run", "--config"]
    assert wheel_task["parameters"][2].endswith("/dsir-selection.yaml")
    assert (folder / bundle["artifacts"]["dsir_spark_wheel"]["path"] / "pyproject.toml").exists()
    config = load_config(str(folder / "dsir-selection.yaml"))
    assert config.raw.paths == ("table:main.corpus.crawl",)
    assert config.resample.num_to_sample == 1_000_000


def test_the_token_shards_example_config_is_valid_and_its_tokenizer_loads():
    from dsir_spark.config import load_config
    from dsir_spark.featurizer.model_tokens import load_model_tokenizer

    config = load_config(str(ROOT / "conf" / "tokens.yaml"))
    assert config.resample.shards.format == "megatron" and config.resample.num_tokens_to_sample == 30_000
    tokenizer = load_model_tokenizer(None, type(config.tokens)(tokenizer=str(ROOT / config.tokens.tokenizer),
                                                               eos=config.tokens.eos))
    assert tokenizer.eos == "<|endoftext|>" and tokenizer.vocab_size == 4000 and tokenizer.token_bytes == 2

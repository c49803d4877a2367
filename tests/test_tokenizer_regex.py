"""features.tokenizer: wordpunct_regex against data-selection 1.0.3 as `pip install data-selection` gives it
today: with NLTK >= 3.10, whose WordPunctTokenizer runs on the `regex` engine. The reference gets its own
virtual environment (the test environment pins NLTK < 3.10 for the default tokenizer's parity tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import EDGE_TEXTS, PILE, TARGET_C, read_jsonl, write_jsonl
from test_parity import RTOL, spark_run

NLTK_WITH_REGEX = "nltk==3.10.4"

REFERENCE = """
import json, sys
import numpy as np
import nltk
sys.path.insert(0, sys.argv[1])
from reference import run_reference
from pathlib import Path
run = run_reference([sys.argv[2]], [sys.argv[3]], Path(sys.argv[4]))
np.save(sys.argv[4] + "/weights.npy", run.log_weights)
np.save(sys.argv[4] + "/lengths.npy", run.lengths)
print(json.dumps({"nltk": nltk.__version__}))
"""


@pytest.fixture(scope="module")
def reference_python(tmp_path_factory):
    """A venv with data-selection 1.0.3 and NLTK 3.10 (from the package registry)."""
    venv = tmp_path_factory.mktemp("nltk310") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "data-selection==1.0.3", NLTK_WITH_REGEX], check=True,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return python


@pytest.mark.slow
def test_wordpunct_regex_matches_the_reference_with_nltk_3_10(spark, tmp_path, reference_python):
    rows = [{"contents": t, "id": 10_000 + i} for i, t in enumerate(EDGE_TEXTS)]
    rows += [{"contents": r["contents"], "id": r["id"]} for r in read_jsonl(PILE)[:300]]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    out = tmp_path / "ref"
    out.mkdir()
    tests = os.path.dirname(__file__)
    done = subprocess.run([reference_python, "-c", REFERENCE, tests, raw, str(TARGET_C), str(out)], check=True,
                          capture_output=True, text=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["nltk"] == "3.10.4"
    ours, scores = spark_run(spark, raw, str(TARGET_C), tmp_path / "ours", tokenizer="wordpunct_regex")
    order = np.argsort([r["id"] for r in rows], kind="stable")
    weights, lengths = np.load(out / "weights.npy"), np.load(out / "lengths.npy")
    np.testing.assert_allclose(scores["log_weight"].to_numpy(), weights[order], rtol=RTOL, atol=0)
    non_empty = np.array([bool(rows[i]["contents"]) for i in order])  # the reference's length of "" is not 0
    np.testing.assert_array_equal(scores["num_tokens"].to_numpy()[non_empty], lengths[order][non_empty])
    # And the default tokenizer differs from it on this data (Devanagari, combining marks).
    _, default = spark_run(spark, raw, str(TARGET_C), tmp_path / "default")
    assert not np.allclose(default["log_weight"].to_numpy(), weights[order], rtol=RTOL, atol=0)

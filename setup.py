"""Builds the compiled featurizer; all other metadata lives in pyproject.toml.

The extension is optional: where it cannot be compiled, the install still succeeds and dsir-spark
runs its pure-Python featurizer (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dsir_spark.featurizer._featurize",
            sources=["dsir_spark/featurizer/_featurize.c"],
            # no fused multiply-adds: sums must be the Python path's doubles bit for bit
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-ffp-contract=off"],
            libraries=["m"],
            optional=True,
        )
    ]
)

"""PySpark's Python worker daemon (``pyspark.daemon``), started with the installed pyspark package found
before Spark's zipped copy of it: the command line's local sessions use it (spark.python.daemon.module).

Spark puts ``<SPARK_HOME>/python/lib/pyspark.zip`` (and py4j's zip) first on every Python worker's path.
Python cannot cache the bytecode of modules it imports from a zip, so every worker compiles PySpark from
source when it starts: about 1.4 s of CPU each, on the first Python job of a run. Where that zip lies
inside a pip-installed pyspark (SPARK_HOME is the package folder itself), the package next to it holds
the same files with their bytecode cached: the zips are moved to the end of the path, and only if the
package the workers would then import is that very package (and py4j the one installed beside it).

Runs before pyspark is imported: it only uses the standard library.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder


def _zipped_copy_home(entry: str) -> str | None:
    """The pyspark package folder whose ``python/lib`` holds ``entry`` (a zip on the path), or None."""
    lib = os.path.dirname(entry)
    home = os.path.dirname(os.path.dirname(lib))
    if not entry.endswith(".zip") or os.path.join(home, "python", "lib") != lib:
        return None
    return home if os.path.isfile(os.path.join(home, "__init__.py")) else None


def prefer_installed_pyspark(path: list[str]) -> list[str]:
    """``path`` with the zips inside a pip-installed pyspark moved last, when pyspark and py4j then
    resolve to that installation; else ``path`` unchanged."""
    zips = [entry for entry in path if _zipped_copy_home(entry)]
    if not zips:
        return path
    home = _zipped_copy_home(zips[0])
    reordered = [entry for entry in path if entry not in zips] + zips
    pyspark, py4j = PathFinder.find_spec("pyspark", reordered), PathFinder.find_spec("py4j", reordered)
    same_package = pyspark is not None and pyspark.origin == os.path.join(home, "__init__.py")
    site = os.path.dirname(home)
    beside = py4j is not None and py4j.origin is not None and os.path.dirname(os.path.dirname(py4j.origin)) == site
    return reordered if same_package and beside else path


def quiet_when_cancelled(worker):
    """PySpark's worker function, returning quietly where the JVM closed the task's socket (a cancelled
    job: Ctrl-C, SIGTERM) instead of printing a BrokenPipeError trace into the user's terminal."""
    def run(sock, authenticated):
        try:
            return worker(sock, authenticated)
        except BrokenPipeError:
            return 0
    return run


if __name__ == "__main__":
    sys.path[:] = prefer_installed_pyspark(sys.path)
    import pyspark.daemon

    pyspark.daemon.worker = quiet_when_cancelled(pyspark.daemon.worker)
    pyspark.daemon.manager()

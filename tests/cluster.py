"""Real Spark parts for the tests: a standalone cluster and a Spark Connect server, started and stopped here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
REPO = Path(__file__).parent.parent


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all bound at once, so that none is handed out twice (a master's UI port
    taken by a worker's UI once sent the master's UI to the next port and the test to the worker's page)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def spark_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, **extra}


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(proc: subprocess.Popen) -> None:
    """Stops a process started with start_new_session=True, with everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)


class StandaloneCluster:
    """A master and workers (one core each) on 127.0.0.1, started with pyspark's bin/spark-class."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.root = root
        self.port, self.ui_port, *self.worker_ui_ports = free_ports(2 + workers)
        self.url = f"spark://127.0.0.1:{self.port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.worker_dirs = [root / f"worker{i}" for i in range(workers)]

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        handle = open(log, "w")
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=handle,
                                stderr=subprocess.STDOUT, env=spark_env(), start_new_session=True)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        try:
            return int(self.state().get("aliveworkers", 0))
        except (OSError, ValueError):  # not listening yet, or a page that is not the master's JSON yet
            return 0

    def start(self) -> StandaloneCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.master = self._spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(self.port), "--webui-port", str(self.ui_port)],
                                  self.root / "master.log")
        for i, work_dir in enumerate(self.worker_dirs):
            work_dir.mkdir(parents=True, exist_ok=True)
            self.workers.append(self._spawn(
                ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "2g", "--work-dir", str(work_dir), "--webui-port", str(self.worker_ui_ports[i])],
                self.root / f"worker{i}.log"))
        wait_for(lambda: self.alive_workers() == len(self.worker_dirs), 90, "the standalone workers to register")
        return self

    def kill_worker(self, index: int) -> None:
        """Loses a node: SIGKILL to the worker and the executor it started (one process group)."""
        os.killpg(self.workers[index].pid, signal.SIGKILL)

    def tasks_run_by_worker(self) -> list[int]:
        """Finished tasks in each worker's executor logs."""
        counts = []
        for work_dir in self.worker_dirs:
            count = 0
            for log in work_dir.glob("app-*/*/stderr"):
                count += log.read_text(errors="replace").count("Finished task")
            counts.append(count)
        return counts

    def stop(self) -> None:
        for proc in [*self.workers, self.master]:
            if proc is not None:
                stop_process(proc)


def package_library(dest: Path) -> Path:
    """The library as a zip for --py-files (what README's spark-submit section builds)."""
    archive = shutil.make_archive(str(dest / "dsir_spark"), "zip", root_dir=REPO, base_dir="dsir_spark")
    return Path(archive)


def spark_submit(master: str, py_files: Path, args: list[str], log: Path, **conf: str) -> subprocess.Popen:
    command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master, "--py-files", str(py_files),
               "--conf", f"spark.pyspark.python={sys.executable}", "--conf", "spark.ui.enabled=false"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(REPO / "jobs" / "dsir_job.py"), *args]
    # Python imports compiled modules from files only, never from a --py-files zip: the executors run the
    # pure-Python featurizer, whose weights are the compiled one's bit for bit.
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=spark_env(DSIR_SPARK_FEATURIZER="auto"), cwd=REPO, start_new_session=True)


class ConnectServer:
    """pyspark's sbin/start-connect-server.sh in the foreground, on a free local port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ConnectServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = spark_env(SPARK_NO_DAEMONIZE="1", SPARK_LOG_DIR=str(self.root), SPARK_PID_DIR=str(self.root))
        self.proc = subprocess.Popen(
            [str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--master", "local[2]",
             "--conf", f"spark.connect.grpc.binding.port={self.port}", "--conf", "spark.ui.enabled=false",
             "--conf", "spark.connect.progress.reportInterval=200ms",  # progress reaches a client sooner
             "--conf", "spark.sql.shuffle.partitions=4",
             "--conf", f"spark.sql.warehouse.dir={self.root / 'warehouse'}"],
            stdout=open(self.root / "server.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"connect server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 120, "the Spark Connect server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

"""--ray behaves like a run without Ray when stopped and when pointed at the wrong address (issue 19,
class 4): SIGTERM stops it with the "interrupted" status, its report and the resume hint (Ray's own
handlers printed a C++ stack dump and exited 15); an address where something other than Ray listens
is refused in one line within seconds (Ray retried it for minutes). Skipped without Ray."""

from __future__ import annotations

import json
import signal
import socketserver
import subprocess
import sys
import threading
import time

import pytest

from negd.cli import main
from tests.runtools import negd_env
from tests.test_shards import TINY

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


class _Http(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


class _Silent(socketserver.BaseRequestHandler):
    def handle(self):
        time.sleep(8)  # longer than the probe waits (CONNECT_TIMEOUT)


class _Closes(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.close()


@pytest.fixture(params=[_Http, _Silent, _Closes], ids=["http", "silent", "closes"])
def impostor(request):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), request.param)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _config(tmp_path, data=TINY):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def test_something_else_listening_is_refused_in_one_line(tmp_path, capsys, impostor):
    start = time.perf_counter()
    args = ["run", str(_config(tmp_path)), "--ray", impostor, "--no-progress", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert time.perf_counter() - start < 20  # the probe waits at most CONNECT_TIMEOUT (5 s)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--ray: '{impostor}' is not a Ray cluster" in err, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_real_ray_gcs_passes_the_probe():
    import ray

    from negd.experiments.shards.on_ray import _check_reachable

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        _check_reachable(ray.get_runtime_context().gcs_address)
    finally:
        if started:
            ray.shutdown()


# Long enough (tens of seconds of shard work here) that the signal lands in the middle of the run.
LONG = TINY | {"realizations": 2, "t_final": 20.0, "lambda": 0.01, "n_snapshots": 10, "scan": None}


def _wait_for(path, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def test_sigterm_under_ray_stops_like_without_ray_and_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "negd.cli", "run", str(_config(tmp_path, LONG)), "--ray", "local",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=negd_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the first snapshot of arm 0 is on disk: Ray is up and shards are running
        assert _wait_for(out / "arms" / "0" / "checkpoint.pt", 240), "the run did not start"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err[-3000:])  # EXIT_INTERRUPTED, not 15 or a crash
    assert "SIGTERM received" not in err and "StackTrace" not in err and "Traceback" not in err, err[-3000:]
    assert f"negd: resume with: negd run --resume {out}" in err, err
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "interrupted" and status["report"] == "written", status
    resumed = subprocess.run([sys.executable, "-m", "negd.cli", "run", "--resume", str(out), "--no-progress"],
                             env=negd_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "complete"


def test_ray_init_leaves_the_callers_signal_handlers(monkeypatch):
    """Unit check of the mechanism: whatever ray.init installs, the handlers before it are back after."""
    from negd.experiments.config.schema import config_from_dict
    from negd.experiments.shards import on_ray

    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **kw):
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))  # what Ray's driver does
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        def remote(self, **kw):
            return lambda fn: fn

        def cluster_resources(self):
            return {"CPU": 1}

    mine = lambda *a: None  # noqa: E731
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    monkeypatch.setattr(on_ray, "_import_ray", FakeRay)
    try:
        signal.signal(signal.SIGTERM, mine)
        on_ray.RayShards.connect("local", config_from_dict(TINY))
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

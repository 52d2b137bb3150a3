"""Running the server (facegan/serve/run.py): bad setups refused, --workers share the port, stops."""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from facegan.errors import FaceganError
from tests.serve.helpers import get_ok, server_process


def test_serve_refuses_bad_setups(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facegan.serve import ServeConfig, build_app, serve

    tiny = str(models["tiny32"])
    with pytest.raises(FaceganError, match="no models"):
        build_app({})
    monkeypatch.setattr("facegan.sharing.pretrained.available", lambda: [])
    with pytest.raises(FaceganError, match="needs a model"):
        serve(ServeConfig())
    monkeypatch.undo()
    odd = tmp_path / "my face!.safetensors"  # the name defaults to the file's stem
    odd.write_bytes(models["tiny32"].read_bytes())
    with pytest.raises(FaceganError, match="bad model name"):
        serve(ServeConfig(checkpoint=(str(odd),)))
    with pytest.raises(FaceganError, match="two models are named 'x'"):
        serve(ServeConfig(checkpoint=(f"x={tiny}", f"x={models['tiny64']}")))
    with pytest.raises(FaceganError, match="does not exist"):
        serve(ServeConfig(checkpoint=(f"x={tmp_path / 'missing.pt'}",), device="cpu"))
    with pytest.raises(FaceganError, match="device"):
        serve(ServeConfig(checkpoint=(tiny,), device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(FaceganError, match="CUDA"):
            serve(ServeConfig(checkpoint=(tiny,), device="cuda"))
    with pytest.raises(FaceganError, match="--workers must be at least 1"):
        ServeConfig(workers=0)
    with pytest.raises(FaceganError, match="--port must be between 0 and 65535"):
        ServeConfig(port=65536)
    # A busy port is one clear error, before anything is served.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FaceganError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(ServeConfig(checkpoint=(f"x={tiny}",), port=port, device="cpu"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_workers_share_the_port_and_stop_cleanly(
    models: dict[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    with server_process(models, log, ["--workers", "2"]) as (base, proc):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, children
        assert json.loads(get_ok(f"{base}/healthz")[1])["ok"] is True
        with ThreadPoolExecutor(4) as pool:
            tags = set(pool.map(lambda i: get_ok(f"{base}/api/face.png?seed={i % 2}")[0]["etag"], range(16)))
        assert len(tags) == 2  # every worker names a face by the same ETag
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers):
            assert time.monotonic() < deadline, "a worker outlived the server"
            time.sleep(0.1)
    assert "Traceback" not in log.read_text()

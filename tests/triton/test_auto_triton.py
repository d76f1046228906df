"""`infermeter wrap` meters the Triton clients of an unmodified app (grpc, http, grpc.aio),
against a real Triton server, in a real child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agent.buffer import Buffer
from agent.record import Status

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the `triton` extra) is not installed")

APP = textwrap.dedent("""
    import asyncio
    import sys

    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpc_aio
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    def inputs(module):
        value = module.InferInput("x", [2, 3], "FP32")
        value.set_data_from_numpy(np.ones((2, 3), dtype=np.float32))
        return [value]

    grpc_url, http_url = sys.argv[1:3]
    for module, url in ((grpcclient, grpc_url), (httpclient, http_url)):
        client = module.InferenceServerClient(url)
        assert isinstance(client, module.InferenceServerClient)
        assert (client.infer("double", inputs(module)).as_numpy("y") == 2).all()
        try:
            client.infer("no-such-model", inputs(module))
        except InferenceServerException:
            pass
        else:
            raise AssertionError("no error")

    async def main():
        async with grpc_aio.InferenceServerClient(grpc_url) as client:
            await client.infer("double", inputs(grpc_aio))

    asyncio.run(main())
""")


def test_an_unmodified_apps_triton_clients_are_metered(server, tmp_path, monkeypatch):
    monkeypatch.setenv("INFERMETER_TAGS", "project=search,user=alice")
    app = tmp_path / "app.py"
    app.write_text(APP)
    buffer_path = tmp_path / "buffer.db"

    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "wrap", "--buffer", str(buffer_path), "--",
         sys.executable, str(app), server.grpc_url, server.http_url],
        capture_output=True, text=True, timeout=120, check=False,
    )

    assert done.returncode == 0, done.stderr
    with Buffer.open(buffer_path) as buffer:
        records = buffer.read()
    assert [(r.model, r.execution_provider, r.status) for r in records] == [
        ("double", "grpc", Status.OK), ("no-such-model", "grpc", Status.ERROR),
        ("double", "http", Status.OK), ("no-such-model", "http", Status.ERROR),
        ("double", "grpc", Status.OK),
    ]
    assert all(r.runtime == "triton" and dict(r.tags) == {"project": "search", "user": "alice"} for r in records)

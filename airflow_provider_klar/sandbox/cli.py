"""``klar-sandbox``: serve the local Klar sandbox until interrupted.

Example::

    klar-sandbox --port 8765 --token dev-token --db /tmp/klar.db --latency-ms 50 --rate-limit 20/s
    klar-sandbox --port 0 --envelope cogs=array --max-body-bytes 200000 --echo-auth --latency-jitter-ms 40

With ``--port 0`` a free port is chosen; the first line printed names the URL
(``Klar sandbox listening on http://127.0.0.1:<port>``), so a script can read it.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

from airflow_provider_klar.sandbox.contract import ENVELOPES
from airflow_provider_klar.sandbox.faults import SWITCHABLE, parse_rate


def _envelope(text: str) -> tuple[str | None, str]:
    resource, _, shape = text.rpartition("=")
    if shape not in ENVELOPES or (resource and resource not in SWITCHABLE):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use {' or '.join(ENVELOPES)} (every cost resource), or RESOURCE=SHAPE with "
            f"RESOURCE one of {', '.join(SWITCHABLE)}."
        )
    return resource or None, shape


def envelope_knob(values: Sequence[tuple[str | None, str]] | None) -> str | dict[str, str] | None:
    """Turn repeated ``--envelope`` values into the ``envelope`` switch (a shape, or one per resource)."""
    if not values:
        return None
    knob: dict[str, str] = {}
    for resource, shape in values:
        if resource is None:
            knob.update(dict.fromkeys(SWITCHABLE, shape))
        else:
            knob[resource] = shape
    return knob


def _rate(text: str) -> float | None:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="klar-sandbox",
        description="A local stand-in for Klar's Open API (orders, refunds, cogs, logistics and "
        "transaction costs), validating with airflow-provider-klar's models. OpenAPI at /docs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    parser.add_argument("--token", default="dev-token", help="bearer token to require (default: dev-token)")
    parser.add_argument(
        "--db", default=None, help="SQLite file to keep records across restarts (default: memory)"
    )
    parser.add_argument("--latency-ms", type=float, default=0, help="delay added to every Klar request")
    parser.add_argument("--fail-rate", type=float, default=0, help="probability (0-1) of a random 500/503")
    parser.add_argument(
        "--drop-rate", type=float, default=0, help="probability (0-1) of closing the connection"
    )
    parser.add_argument("--rate-limit", type=_rate, default=None, help="requests allowed, e.g. 10/s or 600/m")
    parser.add_argument("--retry-after", type=float, default=1, help="Retry-After seconds sent with 429")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random faults")
    parser.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=0,
        help="random extra delay per request, up to this (answers come back out of order)",
    )
    parser.add_argument(
        "--envelope",
        type=_envelope,
        action="append",
        metavar="[RESOURCE=]array|items",
        help="body shape the cost resources expect (default items); repeat for several resources",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=None, help="answer 413 to request bodies larger than this"
    )
    parser.add_argument(
        "--echo-auth",
        action="store_true",
        help="repeat the request's Authorization header in error texts (to test token scrubbing)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox in the foreground until SIGINT or SIGTERM.

    :param argv: Arguments (default: ``sys.argv[1:]``).
    :returns: The exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from airflow_provider_klar.sandbox.app import create_app
    except ImportError as exc:
        print(
            f"klar-sandbox needs FastAPI and uvicorn ({exc}); install airflow-provider-klar[sandbox].",
            file=sys.stderr,
        )
        return 2
    app = create_app(
        token=args.token,
        db=args.db,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        rate_limit=args.rate_limit,
        drop_rate=args.drop_rate,
        retry_after=args.retry_after,
        seed=args.seed,
        latency_jitter_ms=args.latency_jitter_ms,
        envelope=envelope_knob(args.envelope),
        max_body_bytes=args.max_body_bytes,
        echo_auth=args.echo_auth,
    )
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        print(f"klar-sandbox cannot listen on {args.host}:{args.port}: {exc.strerror}.", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    where = args.db or "memory"
    print(
        f"Klar sandbox listening on http://{args.host}:{port} (records in {where}; docs at /docs)", flush=True
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none")
    # Uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with the handler
    # found at start: make that an interrupt for SIGTERM too, so both end here with status 0.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        app.state.sandbox.close()
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

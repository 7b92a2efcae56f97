#!/usr/bin/env python3
"""Benchmark: the CPU cost of logs and metrics per SMTP/LMTP transaction.

Calls what a DATA transaction adds (``protocols.smtp.handlers.log_transaction``: the
latency histogram, the accepted counter, the log line) N times in a fresh process
per mode, and prints the process CPU time per call:

* ``off``: POSTERN_METRICS=false, POSTERN_LOG_LEVEL=warning (nothing recorded);
* ``metrics``: multiprocess metrics (as under ``postern serve``), log at warning;
* ``text`` / ``json``: multiprocess metrics and the log line at info, to /dev/null.

Compare the difference with the server CPU per message of ``smtp_delivery.py``
(postern LMTP, ms/message) to get the share. The whole-server comparison is
``smtp_delivery.py --instrumentation``; this one is steadier on a loaded machine.

    .venv/bin/python bench/instrumentation_cost.py [--calls 50000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

MODES = {
    "off": (False, "warning", "text"),
    "metrics": (True, "warning", "text"),
    "text": (True, "info", "text"),
    "json": (True, "info", "json"),
}


def child(mode: str, calls: int) -> None:
    enabled, level, fmt = MODES[mode]
    if enabled:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="postern-bench-metrics-")
    from postern.telemetry import metrics
    from postern.protocols.smtp.handlers import log_transaction
    from postern.serve.logs import configure

    metrics.setup(enabled)
    configure(level, fmt, stream=open(os.devnull, "w"), worker=True)  # noqa: SIM115

    class Session:
        peer = ("127.0.0.1", 40000)

    class Envelope:
        original_content = b"x" * 20_000
        mail_from = "someone@remote.example"
        rcpt_tos = ["user42@example.com"]  # noqa: RUF012

    for _ in range(1000):  # warm up
        log_transaction("lmtp", time.perf_counter(), "6b174c2e96f80f2e7c67bc21", Session, Envelope, "250 2.0.0 Ok")  # type: ignore[arg-type]
    start = time.process_time()
    for _ in range(calls):
        log_transaction("lmtp", time.perf_counter(), "6b174c2e96f80f2e7c67bc21", Session, Envelope, "250 2.0.0 Ok")  # type: ignore[arg-type]
    print(f"{(time.process_time() - start) / calls * 1e6:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the median counts")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return 0
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, float] = {}
    for mode in MODES:
        runs = sorted(
            float(
                subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--calls", str(args.calls)], check=True, capture_output=True, text=True
                ).stdout
            )
            for _ in range(args.repeat)
        )
        results[mode] = runs[len(runs) // 2]
    for mode, value in results.items():
        print(f"  {mode:<8} {value:6.2f} us per transaction  (+{value - results['off']:.2f} us over off)")
    print(f"load average after:  {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A Container Broker client, as existing ones are written (requests, Container Broker's routes),
pointed at `brokerctl server`: it submits a task, polls it until it ends and prints its logs.

    BROKER_SERVER=http://127.0.0.1:8080 BROKER_TOKEN=bk_... \\
        python examples/containerbroker_client.py --image busybox --cmd 'echo hello' --execution-type default

Prints the task's uuid, each status it passes through, then its output; exits 0 when the task
completed, 1 when it failed (or ended in error), 2 when it did not end within --timeout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import requests

ENDED = ("completed", "failed", "error")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("BROKER_SERVER", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("BROKER_TOKEN"))
    parser.add_argument("--name", default="example")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--cmd", default="echo hello from container broker")
    parser.add_argument("--execution-type", default="default")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.token}"
    task = {"name": args.name, "image": args.image, "cmd": args.cmd, "execution_type": args.execution_type,
            "tags": dict(tag.split("=", 1) for tag in args.tag), "persist_logs": True}
    # A retried POST with the same key gets the same task back instead of a second one.
    created = session.post(f"{args.server}/tasks", json=task, headers={"X-Idempotency-Key": str(uuid.uuid4())},
                           timeout=10)
    created.raise_for_status()
    task_uuid = created.json()["uuid"]
    print(f"uuid {task_uuid}", flush=True)

    deadline, seen = time.monotonic() + args.timeout, None
    while True:
        shown = session.get(f"{args.server}/tasks/{task_uuid}", timeout=10)
        shown.raise_for_status()
        state = shown.json()
        if state["status"] != seen:
            seen = state["status"]
            print(f"status {seen}", flush=True)
        if seen in ENDED:
            break
        if time.monotonic() > deadline:
            print(f"task {task_uuid} did not end within {args.timeout:g}s", file=sys.stderr)
            return 2
        time.sleep(0.5)

    print(f"exit_code {state['exit_code']} try_count {state['try_count']}", flush=True)
    logs = session.get(f"{args.server}/tasks/{task_uuid}/logs", timeout=10)
    logs.raise_for_status()
    sys.stdout.write(logs.json()["logs"] or "")
    return 0 if seen == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())

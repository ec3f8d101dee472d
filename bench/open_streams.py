#!/usr/bin/env python3
"""Hold N streaming chat completions open through the gateway and read its memory.

Run by bench/run.sh (issue 11, item 6): opens N connections to the gateway, each sending one
`stream: true` chat completion for a model whose upstream key makes the mock send the stream up
to its first content chunk and then hold it open (the mock's `streamhang-` keys). Once every
stream has delivered its first content chunk, it reads the gateway's VmRSS and VmHWM from
/proc/PID/status, then closes all the connections.

Prints one line: `open-streams n=N opened=K rss_idle_kb=A rss_open_kb=B hwm_kb=C
seconds_to_open=S failures=F` (kB as /proc reports them). Exits 1 if any stream failed to open.
Standard library only.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

# What the mock's first content chunk carries (the first word of every answer), as relayed
# through the gateway's OpenAI-compatible stream.
FIRST_CONTENT = b'"one"'
# Connections being set up at once: enough to open 10,000 streams in seconds, few enough not to
# overflow the gateway's listen backlog.
CONNECT_CONCURRENCY = 200


def proc_status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


async def open_stream(host, port, request, gate, timeout):
    """Returns the open (reader, writer) once the first content chunk arrived, or an error text."""
    async with gate:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.write(request)
            await writer.drain()
            received = b""
            deadline = time.monotonic() + timeout
            while FIRST_CONTENT not in received:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no first content chunk in time")
                chunk = await asyncio.wait_for(reader.read(4096), remaining)
                if not chunk:
                    status = received.split(b"\r\n", 1)[0].decode("latin-1")
                    raise ConnectionError(f"closed before the first content ({status!r})")
                received += chunk
                if len(received) > 64 * 1024:
                    raise ValueError("64 KiB without the first content chunk")
            if not received.startswith(b"HTTP/1.1 200"):
                raise ValueError(received.split(b"\r\n", 1)[0].decode("latin-1"))
            return reader, writer
        except (OSError, asyncio.TimeoutError, TimeoutError, ValueError, ConnectionError) as error:
            if writer is not None:
                writer.close()
            return f"{type(error).__name__}: {error}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="gateway base URL, http://127.0.0.1:PORT")
    parser.add_argument("--token", required=True, help="gateway token")
    parser.add_argument("--model", required=True, help="model whose upstream holds streams open")
    parser.add_argument("--pid", type=int, required=True, help="the gateway's process id")
    parser.add_argument("--n", type=int, required=True, help="streams to hold open at once")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds each stream may take to deliver its first content")
    args = parser.parse_args()

    target = urlsplit(args.url)
    host, port = target.hostname, target.port or 80
    body = json.dumps({
        "model": args.model,
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {args.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    rss_idle = proc_status_kb(args.pid, "VmRSS")
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.monotonic()
    results = await asyncio.gather(
        *(open_stream(host, port, request, gate, args.timeout) for _ in range(args.n)))
    seconds = time.monotonic() - started
    opened = [r for r in results if not isinstance(r, str)]
    failures = [r for r in results if isinstance(r, str)]
    # Every stream that opened is still open here: the memory is read while all are held.
    rss_open = proc_status_kb(args.pid, "VmRSS")
    hwm = proc_status_kb(args.pid, "VmHWM")
    for _, writer in opened:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer in opened), return_exceptions=True)

    print(f"open-streams n={args.n} opened={len(opened)} rss_idle_kb={rss_idle} "
          f"rss_open_kb={rss_open} hwm_kb={hwm} seconds_to_open={seconds:.1f} "
          f"failures={len(failures)}")
    if failures:
        kinds = {}
        for failure in failures:
            kinds[failure] = kinds.get(failure, 0) + 1
        for text, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
            print(f"open-streams: {count} x {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

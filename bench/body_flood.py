#!/usr/bin/env python3
"""Body flood (issue 10, item 6): memory stays bounded whatever clients send.

Starts the mock upstream and the gateway, then:
  1. idle: RSS after a warm-up, and other clients' p50/p99 on small chat requests;
  2. attack: CONNECTIONS authenticated connections each declare a DECLARED-byte body and send
     SENT bytes of it, then stall (the gateway must not hold them all: 503 `bodies_in_flight`
     past server.max_body_bytes_in_flight, 408 past server.body_read_timeout); meanwhile the
     other clients' p50/p99 again, and the gateway's peak RSS (VmHWM);
  3. after: the attackers close; RSS a few seconds later.

Usage: bench/body_flood.py [--gateway-bin PATH] [--mock-bin PATH] [--connections 300]
                           [--declared 20000000] [--sent 4194304] [--seconds 10]
Defaults use target/release binaries (build them with
`cargo build --release -p switchyard -p mock-upstream --bin switchyard --bin mock-upstream`).
Targets: peak RSS <= 256 MB, RSS back near idle afterwards, other clients' p99 unaffected.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASTER_KEY = "bench-master-key-0123456789abcdef0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def post(port, path, body, token, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def latencies(port, token, seconds, workers=4):
    """Small chat requests from `workers` clients for `seconds`: (p50 ms, p99 ms, statuses)."""
    samples, statuses, lock = [], {}, threading.Lock()
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]}
    until = time.monotonic() + seconds

    def client():
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                status, _ = post(port, "/v1/chat/completions", body, token)
            except OSError as error:
                status = type(error).__name__
            elapsed = (time.monotonic() - started) * 1000
            with lock:
                samples.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] if samples else float("nan")
    return pick(0.50), pick(0.99), statuses


def attacker(port, token, declared, sent, answers, stop):
    """Declares `declared` bytes, sends `sent`, stalls until the gateway answers or `stop`."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
                      f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
                      f"content-length: {declared}\r\n\r\n").encode())
        chunk = b" " * 65536
        left = sent
        sock.settimeout(5)
        while left > 0 and not stop.is_set():
            try:
                sock.sendall(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
            except socket.timeout:
                break  # the gateway stopped reading (it refused the body)
            except OSError:
                break
        sock.settimeout(1)
        status = "stalled"
        while not stop.is_set():
            try:
                head = sock.recv(64)
                status = head.split(b" ")[1].decode() if head else "closed"
                break
            except socket.timeout:
                continue
            except OSError as error:
                status = type(error).__name__
                break
        answers.append(status)
        sock.close()
    except OSError as error:
        answers.append(type(error).__name__)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-bin", default=os.path.join(ROOT, "target/release/switchyard"))
    parser.add_argument("--mock-bin", default=os.path.join(ROOT, "target/release/mock-upstream"))
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--declared", type=int, default=20_000_000)
    parser.add_argument("--sent", type=int, default=4 << 20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="switchyard-flood.")
    processes = []
    try:
        mock = subprocess.Popen([args.mock_bin, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        processes.append(mock)
        mock_addr = mock.stdout.readline().strip().removeprefix("listening on ")
        port = free_port()
        config = os.path.join(work, "flood.toml")
        with open(config, "w") as file:
            file.write(f"""[server]
listen = "127.0.0.1:{port}"
[admin]
master_key = "{MASTER_KEY}"
[logging]
level = "error"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "http://{mock_addr}/v1"
keys = ["ok-flood-1", "ok-flood-2"]
models = ["mock-gpt"]
""")
        env = dict(os.environ, SWITCHYARD__DATABASE__URL=f"sqlite://{work}/flood.db")
        gateway = subprocess.Popen([args.gateway_bin, "serve", "--config", config], env=env,
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "gateway.log"), "w"))
        processes.append(gateway)
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        status, answer = post(port, "/admin/tokens", {"name": "flood"}, MASTER_KEY)
        if status != 201:
            sys.exit(f"could not create a token: {status} {answer!r}")
        token = json.loads(answer)["token"]

        latencies(port, token, 2)  # warm-up
        idle_rss = rss_kb(gateway.pid)
        idle_p50, idle_p99, idle_statuses = latencies(port, token, args.seconds)
        print(f"idle:   RSS {idle_rss / 1024:.0f} MiB; others p50 {idle_p50:.1f} ms, p99 {idle_p99:.1f} ms {idle_statuses}")

        answers, stop = [], threading.Event()
        attackers = [threading.Thread(target=attacker, args=(port, token, args.declared, args.sent, answers, stop))
                     for _ in range(args.connections)]
        for thread in attackers:
            thread.start()
        peak = [0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_kb(gateway.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        time.sleep(1)
        flood_p50, flood_p99, flood_statuses = latencies(port, token, args.seconds)
        stop.set()
        for thread in attackers:
            thread.join()
        sampling.set()
        sampler.join()
        hwm = rss_kb(gateway.pid, "VmHWM")
        counts = {}
        for answer in answers:
            counts[answer] = counts.get(answer, 0) + 1
        print(f"attack: {args.connections} x {args.sent} of {args.declared} declared bytes; answers {counts}")
        print(f"attack: peak RSS {max(hwm, peak[0]) / 1024:.0f} MiB; others p50 {flood_p50:.1f} ms, "
              f"p99 {flood_p99:.1f} ms {flood_statuses}")
        time.sleep(5)
        print(f"after:  RSS {rss_kb(gateway.pid) / 1024:.0f} MiB (5 s after the attackers closed)")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()

"""Real servers on loopback for the remote tests: moto's S3 server (its own
process, SigV4 signatures and IAM policies checked) and a small
fault-injection proxy of our own that sits between client and server."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: Optional[subprocess.Popen] = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


ALLOW_S3 = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


@dataclass
class S3Server:
    """moto in server mode with authentication on: the first five requests
    (creating two IAM users and their keys) are free, every later one must
    be signed with a key moto knows and allowed by its user's policy."""

    process: subprocess.Popen
    endpoint: str
    key: str
    secret: str
    denied_key: str
    denied_secret: str

    def options(self, **extra: str) -> Dict[str, str]:
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret,
                "region": "us-east-1", **extra}

    def client(self, endpoint: Optional[str] = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port_containing(digits: str) -> int:
    """A free port whose number contains `digits`: for tests of code that
    must not mistake a port in a URL for a status code."""
    for port in range(1024, 65536):
        if digits in str(port):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port contains {digits}")


def start_s3(port: Optional[int] = None) -> S3Server:
    import boto3

    port = port or free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="5", MOTO_ALLOW_NONEXISTENT_REGION="false")
    process = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, process)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="setup",
                       aws_secret_access_key="setup", region_name="us-east-1")
    iam.create_user(UserName="writer")
    key = iam.create_access_key(UserName="writer")["AccessKey"]
    iam.put_user_policy(UserName="writer", PolicyName="s3", PolicyDocument=ALLOW_S3)
    iam.create_user(UserName="nobody")
    denied = iam.create_access_key(UserName="nobody")["AccessKey"]
    server = S3Server(process, endpoint, key["AccessKeyId"], key["SecretAccessKey"],
                      denied["AccessKeyId"], denied["SecretAccessKey"])
    server.client().create_bucket(Bucket="models")
    return server


@dataclass
class Faults:
    """What the proxy does to the requests it forwards. Each rule applies
    to requests whose method and path-and-query contain its strings."""

    status: Dict[str, int] = field(default_factory=dict)  # substring -> status to answer instead
    status_times: Dict[str, int] = field(default_factory=dict)  # substring -> how many times
    drop_mid_body: Dict[str, int] = field(default_factory=dict)  # substring -> times to cut the body in half
    delay: float = 0.0  # seconds before answering anything
    log: List[str] = field(default_factory=list)  # "METHOD path status"
    sent: int = 0  # body bytes sent to the client

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.log)


def _take(rules: Dict[str, int], times: Dict[str, int], line: str) -> Optional[int]:
    for needle, value in rules.items():
        if needle in line and times.get(needle, 1) > 0:
            if needle in times:
                times[needle] -= 1
            return value
    return None


class FaultProxy:
    """A forwarding HTTP proxy for one upstream that injects faults."""

    def __init__(self, upstream_port: int) -> None:
        self.faults = Faults()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                faults = proxy.faults
                line = f"{self.command} {self.path}"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if faults.delay:
                    time.sleep(faults.delay)
                status = _take(faults.status, faults.status_times, line)
                if status is not None:
                    faults.log.append(f"{line} {status}")
                    payload = f"<Error><Code>Injected{status}</Code></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items()}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                faults.log.append(f"{line} {response.status}")
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                cut = _take(faults.drop_mid_body, faults.drop_mid_body, line) if self.command == "GET" else None
                if cut is not None and len(data) > 1:
                    # Send half the body, then drop the connection.
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                faults.sent += len(data)
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

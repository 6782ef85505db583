"""Asking a freshly started app whether it is ready: an HTTP GET on its own port.

The only module that calls the deployed apps. Errors are answers here (not ready yet), so it
returns what it saw instead of raising.
"""

import http.client
from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    healthy: bool
    detail: str


def probe(
    *, address: str, port: int, path: str, host: str = "", timeout_seconds: float = 2.0
) -> Probe:
    """GET http://address:port/path; 2xx and 3xx are healthy."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout_seconds)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        response.read(65536)
    except (OSError, http.client.HTTPException) as error:
        return Probe(healthy=False, detail=f"GET {path}: {error or type(error).__name__}")
    finally:
        connection.close()
    return Probe(healthy=200 <= response.status < 400, detail=f"GET {path}: {response.status}")

"""A proxy.py plugin for tests/test_proxy.py: writes one JSON line per request the proxy
forwards (keep-alive ones included) to ``$AILY_TEST_PROXY_LOG``, and marks each forwarded
request with an ``X-Test-Proxy`` header, so the test sees both sides."""

from __future__ import annotations

import json
import os

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin


class RecordRequests(HttpProxyBasePlugin):
    """Log and mark every request before it goes upstream."""

    def handle_client_request(self, request: HttpParser) -> HttpParser | None:
        entry = {
            "method": (request.method or b"").decode(),
            "host": f"{(request.host or b'').decode()}:{request.port}",
            "path": (request.path or b"").decode(),
            "authorization": request.has_header(b"authorization"),
        }
        with open(os.environ["AILY_TEST_PROXY_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        request.add_header(b"X-Test-Proxy", b"1")
        return request

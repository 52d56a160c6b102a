"""Container HEALTHCHECK: GET /healthz of the service in this image (stdlib only, no writes).

The service comes from CLAIMDESK_SERVICE (set by the image), its port from
CLAIMDESK_<SERVICE>_PORT (default 8001-8004, as in claimdesk.settings).
Exit status 0 when the service answers 200, 1 otherwise.
"""

import os
import sys
import urllib.request

DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "complaints": 8003, "analytics": 8004}


def main() -> int:
    service = os.environ.get("CLAIMDESK_SERVICE", "")
    if service not in DEFAULT_PORTS:
        sys.stderr.write(f"healthcheck: CLAIMDESK_SERVICE={service!r} is not a service\n")
        return 1
    port = os.environ.get(f"CLAIMDESK_{service.upper()}_PORT", str(DEFAULT_PORTS[service]))
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return 0 if r.status == 200 else 1
    except Exception as exc:
        sys.stderr.write(f"healthcheck: {service} on port {port}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``python es8_client.py URL COMPRESS``: the official elasticsearch-py 8.x client, driven over
stdin/stdout by the tests (it runs in its own venv, :mod:`es8_venv`).

Each input line is ``{"op": "search" | "indices.exists" | ..., "kwargs": {...}}``: the client
method (a dotted path from the client) and its keyword arguments. Each output line is
``{"status", "headers", "body"}`` of the answer, or ``{"status", "error"}`` when the client
raised its ``ApiError`` (the error body as the engine sent it).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from elasticsearch import ApiError, Elasticsearch


def call(client: Elasticsearch, op: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    method: Any = functools.reduce(getattr, op.split("."), client)
    try:
        answer = method(**kwargs)
    except ApiError as exc:
        return {"status": exc.meta.status, "error": exc.body}
    headers = {k.lower(): v for k, v in answer.meta.headers.items()}
    return {"status": answer.meta.status, "headers": headers, "body": answer.body}


def main() -> None:
    url, compress = sys.argv[1], sys.argv[2] == "true"
    with Elasticsearch(url, http_compress=compress, request_timeout=300) as client:
        for line in sys.stdin:
            request = json.loads(line)
            print(json.dumps(call(client, request["op"], request["kwargs"])), flush=True)


if __name__ == "__main__":
    main()

"""shared room: InfluxQL over InfluxDB 2.x's v1-compatible `/query` endpoint.

influxdb-client wraps Flux only. InfluxQL is used where its engine answers what Flux
cannot cheaply: the device shadow is read with one `SELECT *` that returns one row per
device with the fields as columns (Flux would return a table per field and device, ~50 µs
each inside influxd); the rollup service's aggregates are InfluxQL too. Statements live in
`queries/*.influxql` beside the Flux ones and take bound parameters (`$name`), never text
pasted in. Touches: InfluxDB's `/query` over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from shared.flux import SHARED_QUERIES_DIR


class InfluxQLError(RuntimeError):
    """InfluxDB refused or failed the statement; the text is InfluxDB's.

    `status` and `body` are the HTTP answer's, as influxdb-client's ApiException has them,
    so one reader of failures serves both clients.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def read_influxql(own_dir: Path, name: str) -> str:
    """`name`.influxql from the room's own folder, else from the shared one."""
    for folder in (own_dir, SHARED_QUERIES_DIR):
        path = folder / f"{name}.influxql"
        if path.is_file():
            # Comment lines (`--`) document the statement; /query takes one statement bare.
            kept = [
                text for text in path.read_text(encoding="utf-8").splitlines()
                if not text.lstrip().startswith("--")
            ]  # fmt: skip
            return " ".join(" ".join(kept).split())
    raise FileNotFoundError(f"no InfluxQL statement {name!r} in {own_dir} or {SHARED_QUERIES_DIR}")


class InfluxQLClient:
    """One HTTP session to `/query`, with the token and a timeout for every statement."""

    def __init__(self, *, url: str, token: str, timeout_s: float) -> None:
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Token {token}"
        self._http.headers["Accept"] = "application/json"

    def close(self) -> None:
        self._http.close()

    def series(
        self, database: str, statement: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The statement's series as InfluxDB gives them (name, tags, columns, values);
        times in ns. `database` is a bucket's name (its virtual v1 database).

        A timeout raises requests' own exception, and closing the connection cancels the
        statement inside influxd (the handler runs in the request's context).
        """
        response = self._http.post(
            f"{self._url}/query",
            params={"db": database, "epoch": "ns"},
            data={"q": statement, "params": json.dumps(dict(params or {}))},
            timeout=self._timeout_s,
        )
        if response.status_code != 200:
            raise InfluxQLError(
                f"InfluxDB /query answered {response.status_code}: {response.text[:300]}",
                status=response.status_code,
                body=response.text[:300],
            )
        results = response.json().get("results") or [{}]
        first = results[0]
        if "error" in first:
            error = str(first["error"])
            raise InfluxQLError(f"InfluxDB /query failed: {error}", status=200, body=error)
        return list(first.get("series") or [])

    def rows(
        self, database: str, statement: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The statement's rows as dicts (column -> value, a series' GROUP BY tags added)."""
        out: list[dict[str, Any]] = []
        for one in self.series(database, statement, params):
            tags = one.get("tags") or {}
            columns = one.get("columns") or []
            out.extend(
                {**tags, **dict(zip(columns, values, strict=False))}
                for values in one.get("values") or []
            )
        return out

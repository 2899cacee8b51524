"""A loopback stand-in for a Confluent Schema Registry that can be switched into an outage.

Why not the real registry: none installs offline. The app only needs two read endpoints
(`GET /schemas/ids/{id}` and `GET /subjects/{subject}/versions/latest`), so a small threaded HTTP
server serving `schemas/` is enough, and unlike a real registry it can be told to answer 503 on
demand, which is the fault under test. Schema ids are the manifest's; extra ids can be
registered for the same `.avsc` so that a worker meets an id it has never cached while the
registry is down (the app caches schemas by id for the life of its process).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@dataclass
class SchemaCatalog:
    """Schema text by id and latest id by subject, read from `schemas/manifest.json`.

    Shared by the stand-in (to serve) and the verifier (to decode outputs), never by the app.
    """

    by_id: dict[int, str] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    record_of_id: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, schemas_dir: Path = SCHEMAS_DIR) -> SchemaCatalog:
        manifest = json.loads((schemas_dir / "manifest.json").read_text())
        catalog = cls()
        for subject, entry in manifest["subjects"].items():
            text = (schemas_dir / entry["file"]).read_text()
            catalog.by_id[int(entry["id"])] = text
            catalog.latest[subject] = int(entry["id"])
            catalog.record_of_id[int(entry["id"])] = Path(entry["file"]).stem
        return catalog

    def add_alias(self, schema_id: int, of_subject: str) -> int:
        """Register the subject's current schema under another id (not made latest)."""
        source = self.latest[of_subject]
        self.by_id[schema_id] = self.by_id[source]
        self.record_of_id[schema_id] = self.record_of_id[source]
        return schema_id


class RegistryStandIn:
    """Serve a `SchemaCatalog` over HTTP on 127.0.0.1; `outage(True)` makes every answer 503."""

    def __init__(self, catalog: SchemaCatalog | None = None) -> None:
        self.catalog = catalog or SchemaCatalog.from_dir()
        self._down = threading.Event()
        self._lock = threading.Lock()
        self.served: dict[int, int] = {}  # status -> count
        self.served_paths: dict[tuple[int, str], int] = {}  # (status, path) -> count
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def outage(self, down: bool) -> None:
        (self._down.set if down else self._down.clear)()

    @property
    def down(self) -> bool:
        return self._down.is_set()

    def count(self, status: int) -> int:
        with self._lock:
            return self.served.get(status, 0)

    def count_path(self, status: int, path: str) -> int:
        with self._lock:
            return self.served_paths.get((status, path), 0)

    def answer(self, path: str) -> tuple[int, dict]:
        """(status, JSON body) for a GET of `path`, the registry's REST contract."""
        if self._down.is_set():
            return 503, {"error_code": 50003, "message": "registry unavailable (chaos outage)"}
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            text = self.catalog.by_id.get(int(parts[2]))
            if text is None:
                return 404, {"error_code": 40403, "message": "Schema not found"}
            return 200, {"schema": text}
        if len(parts) == 4 and parts[0] == "subjects" and parts[2:] == ["versions", "latest"]:
            schema_id = self.catalog.latest.get(parts[1])
            if schema_id is None:
                return 404, {"error_code": 40401, "message": "Subject not found"}
            return 200, {
                "subject": parts[1],
                "version": 1,
                "id": schema_id,
                "schema": self.catalog.by_id[schema_id],
            }
        return 404, {"error_code": 404, "message": "not found"}

    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = standin.answer(self.path)
                path = self.path.split("?")[0]
                with standin._lock:
                    standin.served[status] = standin.served.get(status, 0) + 1
                    key = (status, path)
                    standin.served_paths[key] = standin.served_paths.get(key, 0) + 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

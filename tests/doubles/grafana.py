"""A loopback HTTP server that enforces the parts of Grafana's HTTP API that
``loglog dashboards push`` uses, as documented (Grafana has no Debian package here).

- Auth: ``Authorization: Bearer <token>`` or Basic; unknown → 401 ``{"message":
  "Unauthorized"}``. A token with the Viewer role may read but not write → 403.
- ``GET /api/frontend/settings`` → ``{"buildInfo": {...}}`` (grafana-client's health check).
- ``GET /api/folders/<uid>`` → 404 ``{"message": "folder not found"}`` when missing;
  ``POST /api/folders`` ``{title, uid?}`` → 200; 409 when the uid exists; 400 without title.
- ``GET /api/dashboards/uid/<uid>`` → ``{"dashboard", "meta": {"folderUid", "version"}}`` or 404.
- ``POST /api/dashboards/db`` ``{dashboard, folderUid?, overwrite?, message?}``: 400 without
  a dashboard or its title, or with a uid over 40 characters; 400 for an unknown
  folderUid; without ``folderUid`` the dashboard moves to General (""); 412 when it
  exists, ``overwrite`` is false and the version differs. Each save bumps the version.
- ``GET /api/datasources/uid/<uid>``, ``POST /api/datasources`` (409 on a taken name),
  ``PUT /api/datasources/uid/<uid>``.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GrafanaState:
    def __init__(self) -> None:
        self.users = {("admin", "admin"): "Admin"}
        self.tokens = {"editor-token": "Editor", "viewer-token": "Viewer"}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _role(self) -> str | None:
        state = self.server.state
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return state.tokens.get(header[7:])
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return state.users.get((user, password))
        return None

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"null")

    def _dispatch(self, method: str) -> None:
        role = self._role()
        if role is None:
            self._send(401, {"message": "Unauthorized"})
            return
        if method != "GET" and role == "Viewer":
            self._send(403, {"message": "Permission denied"})
            return
        path = self.path.split("?")[0]
        state = self.server.state
        with state.lock:
            if method != "GET":
                state.writes += 1
            status, body = self._route(method, path, state)
        self._send(status, body)

    def _route(self, method: str, path: str, state: GrafanaState) -> tuple[int, Any]:
        if method == "GET" and path == "/api/frontend/settings":
            return 200, {"buildInfo": {"version": "11.3.0", "edition": "Open Source"}}
        if path.startswith("/api/folders"):
            return self._folders(method, path, state)
        if path.startswith("/api/dashboards"):
            return self._dashboards(method, path, state)
        if path.startswith("/api/datasources"):
            return self._datasources(method, path, state)
        return 404, {"message": "Not found"}

    def _folders(self, method: str, path: str, state: GrafanaState) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            folder = state.folders.get(path.removeprefix("/api/folders/"))
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            body = self._body()
            if not isinstance(body, dict) or not body.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            uid = body.get("uid") or f"f{len(state.folders) + 1}"
            if uid in state.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            state.folders[uid] = {
                "id": len(state.folders) + 1,
                "uid": uid,
                "title": body["title"],
                "version": 1,
            }
            return 200, state.folders[uid]
        return 405, {"message": "method not allowed"}

    def _dashboards(self, method: str, path: str, state: GrafanaState) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            stored = state.dashboards.get(path.removeprefix("/api/dashboards/uid/"))
            return (200, stored) if stored else (404, {"message": "Dashboard not found"})
        if method != "POST" or path != "/api/dashboards/db":
            return 405, {"message": "method not allowed"}
        body = self._body()
        board = body.get("dashboard") if isinstance(body, dict) else None
        if not isinstance(board, dict):
            return 400, {"message": "Dashboard is required"}
        if not board.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        uid = board.get("uid") or "generated"
        if len(uid) > 40:
            return 400, {"message": "uid too long, max 40 characters"}
        folder = body.get("folderUid", "")
        if folder and folder not in state.folders:
            return 400, {"message": "folder not found"}
        current = state.dashboards.get(uid)
        if (
            current
            and not body.get("overwrite")
            and board.get("version") != current["meta"]["version"]
        ):
            return 412, {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            }
        version = (current["meta"]["version"] + 1) if current else 1
        saved = {**board, "uid": uid, "version": version, "id": len(state.dashboards) + 1}
        state.dashboards[uid] = {
            "dashboard": saved,
            "meta": {"folderUid": folder, "version": version},
        }
        return 200, {
            "id": saved["id"],
            "uid": uid,
            "url": f"/d/{uid}",
            "status": "success",
            "version": version,
        }

    def _datasources(self, method: str, path: str, state: GrafanaState) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            stored = state.datasources.get(path.removeprefix("/api/datasources/uid/"))
            return (200, stored) if stored else (404, {"message": "Data source not found"})
        if method == "POST" and path == "/api/datasources":
            body = self._body()
            if not body.get("name") or not body.get("type"):
                return 400, {"message": "name and type are required"}
            if any(d["name"] == body["name"] for d in state.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            uid = body.get("uid") or f"ds{len(state.datasources) + 1}"
            state.datasources[uid] = {**body, "uid": uid, "id": len(state.datasources) + 1}
            return 200, {
                "datasource": state.datasources[uid],
                "id": state.datasources[uid]["id"],
                "message": "Datasource added",
            }
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            uid = path.removeprefix("/api/datasources/uid/")
            if uid not in state.datasources:
                return 404, {"message": "Data source not found"}
            state.datasources[uid] = {**state.datasources[uid], **self._body()}
            return 200, {"datasource": state.datasources[uid], "message": "Datasource updated"}
        return 405, {"message": "method not allowed"}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: GrafanaState


class GrafanaServer:
    def __init__(self) -> None:
        self.state = GrafanaState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GrafanaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A loopback fake of addok's search API (`GET /search/?q=&citycode=&type=street&limit=`), 127.0.0.1 only: a few
streets, matched on the words typed (case and accents ignored), answered as addok's GeoJSON FeatureCollection."""
from __future__ import annotations

import json
import threading
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


class AddokFake:
    def __init__(self, streets: list[dict]) -> None:
        self.streets = streets  # addok's properties: id, name, citycode, type
        self.failing = False  # every search answered 503
        self.queries: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                fake.queries.append(query)
                if fake.failing or url.path != "/search/":
                    self.send_response(503 if fake.failing else 404)
                    self.end_headers()
                    return
                words = _plain(query.get("q", "")).split()
                found = [street for street in fake.streets
                         if all(word in _plain(street["name"]) for word in words)
                         and street.get("citycode") == query.get("citycode", street.get("citycode"))
                         and street.get("type", "street") == query.get("type", "street")]
                body = json.dumps({"type": "FeatureCollection", "features": [
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [55.45, -20.88]},
                     "properties": {**street, "label": f"{street['name']} {street.get('city', '')}".strip(),
                                    "score": 0.9}}
                    for street in found[:int(query.get("limit", 5))]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def __enter__(self) -> AddokFake:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

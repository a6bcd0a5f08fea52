#!/usr/bin/env python3
"""A fake OpenAI-compatible chat-completions server for SynthTest (stdlib only).

Listens on 127.0.0.1 on an ephemeral port, writes the port to --port-file
(atomically), serves at most --requests requests, then exits; it also exits
after --deadline seconds whatever happened, so a test can never hang on it.
Every request is appended to --log as one JSON line:
    {"method", "path", "headers": {lower-case name: value}, "body": parsed JSON or null, "raw": text}

--mode picks the reply:
  ok          200, Content-Length, a canned completion for the request's kind
  chunked     the same with Transfer-Encoding: chunked (many small chunks)
  big         ok, with a ~200 KB detail reply (several reads on the client)
  error       500 with {"error": {"message": "The server is overloaded", ...}}
  badjson     200 with a body that is not JSON
  nochoices   200 with {"choices": []}
  unparsable  200 with content that holds no "Question:" line
  hang        reads the request and never answers (until the deadline)
"""
import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

CONVERSATION = (
    "Sure, here is a conversation about the image.\n"
    "Question: What colour is the circle?\n"
    "Answer: Red.\n"
    "===\n"
    "Question: How many objects are there?\n"
    "Answer: Two.\n"
    "The second object is a square.\n"
)
DETAIL = "The image shows two shapes on a grey background. A large red circle is on the left."
REASONING = "Question: Which object is closest to the top?\nAnswer: The red circle. It is higher than the square."


def kind_of(body):
    try:
        system = body["messages"][0]["content"]
    except (TypeError, KeyError, IndexError):
        return "conversation"
    if "Design a conversation" in system:
        return "conversation"
    if "Describe the image in detail" in system:
        return "detail"
    return "reasoning"


def completion(content, model):
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--requests", type=int, default=1)
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--deadline", type=float, default=30.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.deadline
    served = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # keep the test output quiet
            pass

        def do_POST(self):
            served[0] += 1
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            with open(args.log, "a") as f:
                f.write(json.dumps({"method": "POST", "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body, "raw": raw}) + "\n")
            model = body.get("model", "") if isinstance(body, dict) else ""
            kind = kind_of(body)
            mode = args.mode
            if mode == "hang":
                time.sleep(max(0.0, deadline - time.monotonic()))
                self.close_connection = True
                return
            status, payload = 200, None
            if mode in ("ok", "chunked", "big"):
                content = {"conversation": CONVERSATION, "detail": DETAIL, "reasoning": REASONING}[kind]
                if mode == "big" and kind == "detail":
                    content = DETAIL + (" The circle is red." * 11000)
                payload = json.dumps(completion(content, model)).encode()
            elif mode == "error":
                status = 500
                payload = json.dumps({"error": {"message": "The server is overloaded", "type": "server_error"}}).encode()
            elif mode == "badjson":
                payload = b"{this is not json"
            elif mode == "nochoices":
                payload = json.dumps({"id": "x", "object": "chat.completion", "choices": []}).encode()
            elif mode == "unparsable":
                payload = json.dumps(completion("I am sorry, I cannot see any image.", model)).encode()
            else:
                status, payload = 400, json.dumps({"error": {"message": "unknown fake mode " + mode}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            if mode == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(payload), 50):
                    part = payload[i:i + 50]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.2
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    while served[0] < args.requests and time.monotonic() < deadline:
        server.handle_request()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

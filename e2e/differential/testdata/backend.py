"""A resource server written the common hand-made Python way (stdlib http.server,
`cryptography` for ES256, hmac for HS256).

It reads a bearer token from the Authorization header (auth.split()[1],
auth.partition(" ")[2]), the query (parse_qs) and bodies of any method: urlencoded
(parse_qs) and multipart/form-data parsed the cgi-free way the Python docs recommend
(the email package, get_payload(decode=True)); chunked request bodies are decoded.
200 {"accepted": true, ...} when any candidate verifies (signature and exp), else 401.
GET /__seen (sent directly, not through the gateway) returns every request it handled.

Environment: DIFF_ES256_PUB (SPKI PEM), DIFF_HS256_SECRET (base64). Prints "PORT <n>".
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ES_PUB = serialization.load_pem_public_key(os.environ["DIFF_ES256_PUB"].encode())
SECRET = base64.b64decode(os.environ["DIFF_HS256_SECRET"])
SEEN = []
SEEN_LOCK = threading.Lock()


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify(tok):
    if not isinstance(tok, str) or not tok:
        return False
    try:
        h, p, s = tok.split(".")
        header = json.loads(b64url(h))
        payload = json.loads(b64url(p))
        sig = b64url(s)
        signing_input = (h + "." + p).encode()
        alg = header.get("alg")
        if alg == "ES256":
            if len(sig) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            ES_PUB.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "HS256":
            if not hmac.compare_digest(hmac.new(SECRET, signing_input, hashlib.sha256).digest(), sig):
                return False
        else:
            return False
        exp = payload.get("exp")
        return isinstance(exp, (int, float)) and exp > time.time()
    except (InvalidSignature, ValueError, TypeError, AttributeError):
        return False


def first(params):
    return params.get("access_token", [None])[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def candidates(self, body):
        out = []
        auth = self.headers.get("Authorization")
        if auth:
            words = auth.split()
            if len(words) > 1:
                out.append(("split()[1]", words[1]))
            out.append(('partition(" ")[2]', auth.partition(" ")[2]))
        out.append(("parse_qs query", first(parse_qs(urlsplit(self.path).query))))
        ctype = self.headers.get_content_type()
        if body and ctype == "application/x-www-form-urlencoded":
            out.append(("parse_qs body", first(parse_qs(body.decode("latin-1")))))
        elif body and ctype == "multipart/form-data":
            msg = BytesParser(policy=policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers.get("Content-Type", "").encode("latin-1") + b"\r\n\r\n" + body)
            if msg.is_multipart():
                for part in msg.iter_parts():
                    if part.get_param("name", header="content-disposition") == "access_token":
                        data = part.get_payload(decode=True) or b""
                        out.append(("email multipart", data.decode("latin-1")))
        return out

    def handle_any(self):
        body = self.read_body()
        path = urlsplit(self.path).path
        if path == "/__seen":
            return self.reply(200, SEEN)
        accepted = None
        try:
            cands = self.candidates(body)
        except Exception as e:  # a parser error: nothing read
            cands = []
        for via, tok in cands:
            if verify(tok):
                accepted = {"via": via, "token": hashlib.sha256(tok.encode("latin-1", "replace")).hexdigest()}
                break
        rec = {"id": path, "accepted": bool(accepted), "via": accepted["via"] if accepted else "",
               "token": accepted["token"] if accepted else ""}
        with SEEN_LOCK:
            SEEN.append(rec)
        self.reply(200 if accepted else 401, dict(rec, backend="py"), backend=True)

    def reply(self, status, obj, backend=False):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if backend:
            self.send_header("X-Diff-Backend", "py")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()

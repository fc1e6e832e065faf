"""A resource server written the common Starlette/FastAPI way (Debian python3-starlette
0.26, python3-multipart for forms, PyJWT from python3-jwt), served by uvicorn (Debian
python3-uvicorn 0.17, h11).

It reads a bearer token from (the first that verifies wins):
  - headers["authorization"] partitioned into scheme and token, scheme "bearer" in any
    case (FastAPI's OAuth2PasswordBearer / HTTPBearer way),
  - query_params["access_token"] (the last value),
  - await request.form() ["access_token"] for application/x-www-form-urlencoded and
    multipart/form-data (python-multipart),
  - otherwise, for any non-empty body, await request.json() ["access_token"] (what a
    handler that calls request.json() reads: json.loads on the bytes, whatever the
    Content-Type; it detects UTF-8 with a BOM, UTF-16 and UTF-32),
  - cookies["access_token"] and ["jwt"],
  - headers["x-forwarded-access-token"] and ["x-auth-token"] (bare or "Bearer <t>").
PyJWT verifies ES256 or HS256 (key by the token's alg) and exp. 200 {"accepted": true, ...}
when a candidate verifies, else 401. GET /__seen (sent directly, not through the gateway)
returns every request it handled.

Environment: DIFF_ES256_PUB (SPKI PEM), DIFF_HS256_SECRET (base64). Prints "PORT <n>".
"""
import asyncio
import base64
import hashlib
import logging
import os
import socket
import sys

import jwt  # PyJWT
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ES_PUB = os.environ["DIFF_ES256_PUB"]
SECRET = base64.b64decode(os.environ["DIFF_HS256_SECRET"])
SEEN = []
# python-multipart logs every byte it skips; the test's stderr is for real trouble.
logging.getLogger("multipart").setLevel(logging.ERROR)


def verify(tok):
    if not isinstance(tok, str) or not tok:
        return False
    try:
        alg = jwt.get_unverified_header(tok).get("alg")
        key = {"ES256": ES_PUB, "HS256": SECRET}.get(alg)
        if key is None:
            return False
        jwt.decode(tok, key, algorithms=[alg], options={"require": ["exp"]})
        return True
    except Exception:
        return False


def strip_bearer(v):
    if isinstance(v, str) and v[:7].lower() == "bearer ":
        return v[7:].strip()
    return v


async def candidates(request):
    out = []
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, param = auth.partition(" ")
        if scheme.lower() == "bearer":
            out.append(("headers authorization", param))
    out.append(("query_params", request.query_params.get("access_token")))
    ctype = request.headers.get("content-type", "")
    body = await request.body()
    if ctype.startswith("application/x-www-form-urlencoded") or ctype.startswith("multipart/form-data"):
        try:
            form = await request.form()
            out.append(("form()", form.get("access_token")))
        except Exception:
            pass
    elif body:
        try:
            data = await request.json()
            if isinstance(data, dict):
                out.append(("json()", data.get("access_token")))
        except Exception:
            pass
    out.append(("cookies access_token", request.cookies.get("access_token")))
    out.append(("cookies jwt", request.cookies.get("jwt")))
    out.append(("headers x-forwarded-access-token", strip_bearer(request.headers.get("x-forwarded-access-token"))))
    out.append(("headers x-auth-token", strip_bearer(request.headers.get("x-auth-token"))))
    return out


async def endpoint(request: Request):
    path = request.url.path
    if path == "/__seen":
        return JSONResponse(SEEN)
    accepted = None
    try:
        cands = await candidates(request)
    except Exception:
        cands = []
    for via, tok in cands:
        if verify(tok):
            accepted = {"via": via, "token": hashlib.sha256(tok.encode("utf-8", "replace")).hexdigest()}
            break
    rec = {"id": path, "accepted": bool(accepted), "via": accepted["via"] if accepted else "",
           "token": accepted["token"] if accepted else ""}
    SEEN.append(rec)
    return JSONResponse(dict(rec, backend="starlette"), status_code=200 if accepted else 401,
                        headers={"X-Diff-Backend": "starlette"})


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
app = Starlette(routes=[Route("/{rest:path}", endpoint, methods=METHODS)])


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sys.stdout.write("PORT %d\n" % sock.getsockname()[1])
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()

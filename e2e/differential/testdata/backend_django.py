"""A resource server written the common Django way (Debian python3-django 3.2, PyJWT
from python3-jwt), served by gunicorn (Debian python3-gunicorn 20.1, one gthread worker).

gunicorn 20.1 passes header names with underscores to WSGI (X_Forwarded_Access_Token
becomes HTTP_X_FORWARDED_ACCESS_TOKEN, like X-Forwarded-Access-Token), as every gunicorn
before 22.0 does; Django's own runserver drops them, so it would hide that spelling.
gunicorn also decodes chunked request bodies, which wsgiref does not.

It reads a bearer token from (the first that verifies wins):
  - META HTTP_AUTHORIZATION split into "Bearer <t>" (djangorestframework-simplejwt's
    way: header.split(), two words, the scheme "Bearer" or "JWT"),
  - request.GET["access_token"] (QueryDict: the last value),
  - request.POST["access_token"] (urlencoded and multipart, Django's MultiPartParser),
  - json.loads(request.body)["access_token"] when request.content_type is
    application/json,
  - request.COOKIES["access_token"] and ["jwt"],
  - request.headers["X-Forwarded-Access-Token"] and ["X-Auth-Token"] (bare or "Bearer <t>";
    Django's headers map HTTP_X_AUTH_TOKEN, so X_Auth_Token is the same header).
Django decodes the query and the body with the charset of the request's Content-Type
(request.encoding), whatever the method. PyJWT verifies ES256 or HS256 (key by the
token's alg) and exp. 200 {"accepted": true, ...} when a candidate verifies, else 401
(also when Django's parsers raise, e.g. more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields).
GET /__seen (sent directly, not through the gateway) returns every request it handled.

Environment: DIFF_ES256_PUB (SPKI PEM), DIFF_HS256_SECRET (base64). Prints "PORT <n>".
"""
import base64
import hashlib
import json
import logging
import os
import sys
import threading

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="differential-test",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
    LOGGING_CONFIG=None,
)
django.setup()
# Django logs every 4xx answer as a warning on django.request; the test's stderr is for
# real trouble.
logging.getLogger("django.request").setLevel(logging.ERROR)

import jwt  # noqa: E402  (PyJWT)
from django.http import JsonResponse  # noqa: E402
from django.urls import re_path  # noqa: E402

ES_PUB = os.environ["DIFF_ES256_PUB"]
SECRET = base64.b64decode(os.environ["DIFF_HS256_SECRET"])
SEEN = []
SEEN_LOCK = threading.Lock()


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


def candidates(request):
    out = []
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    parts = auth.split()
    if len(parts) == 2 and parts[0] in ("Bearer", "JWT"):
        out.append(("simplejwt HTTP_AUTHORIZATION", parts[1]))
    out.append(("request.GET", lambda: request.GET.get("access_token")))
    out.append(("request.POST", lambda: request.POST.get("access_token")))
    if request.content_type == "application/json":
        def from_json():
            data = json.loads(request.body)
            return data.get("access_token") if isinstance(data, dict) else None
        out.append(("json.loads(request.body)", from_json))
    out.append(("request.COOKIES access_token", request.COOKIES.get("access_token")))
    out.append(("request.COOKIES jwt", request.COOKIES.get("jwt")))
    out.append(("request.headers X-Forwarded-Access-Token",
                strip_bearer(request.headers.get("X-Forwarded-Access-Token"))))
    out.append(("request.headers X-Auth-Token", strip_bearer(request.headers.get("X-Auth-Token"))))
    return out


def view(request):
    path = request.path
    if path == "/__seen":
        with SEEN_LOCK:
            return JsonResponse(list(SEEN), safe=False)
    accepted = None
    for via, tok in candidates(request):
        try:
            if callable(tok):
                tok = tok()
        except Exception:  # a parser error: this place is not read
            continue
        if verify(tok):
            accepted = {"via": via, "token": hashlib.sha256(tok.encode("utf-8", "replace")).hexdigest()}
            break
    rec = {"id": path, "accepted": bool(accepted), "via": accepted["via"] if accepted else "",
           "token": accepted["token"] if accepted else ""}
    with SEEN_LOCK:
        SEEN.append(rec)
    resp = JsonResponse(dict(rec, backend="django"), status=200 if accepted else 401)
    resp["X-Diff-Backend"] = "django"
    return resp


urlpatterns = [re_path(r"", view)]


def main():
    from django.core.wsgi import get_wsgi_application
    from gunicorn.app.base import BaseApplication

    application = get_wsgi_application()

    def when_ready(server):
        port = server.LISTENERS[0].sock.getsockname()[1]
        sys.stdout.write("PORT %d\n" % port)
        sys.stdout.flush()

    class App(BaseApplication):
        def load_config(self):
            for k, v in {"bind": "127.0.0.1:0", "workers": 1, "worker_class": "gthread", "threads": 8,
                         "timeout": 600, "accesslog": None, "loglevel": "warning", "when_ready": when_ready}.items():
                self.cfg.set(k, v)

        def load(self):
            return application

    App().run()


if __name__ == "__main__":
    main()

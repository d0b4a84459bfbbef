"""Fake GitHub and Google OAuth2 providers on loopback for the social login tests (no tests
here): one tiny HTTP server answering the authorize, token and user endpoints in the shape each
provider's API has, for one person at a time (`FakeOAuth.person`). Its authorize page approves
at once, as a person who clicks "Authorize" would, and redirects back with a one-time code."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"


@dataclass
class Person:
    """Who is logged in at the provider."""

    uid: str
    login: str
    email: str
    verified: bool = True
    name: str = "Ada Lovelace"


class FakeOAuth:
    def __init__(self):
        self.person = Person(uid="4242", login="ada", email="ada@example.com")
        self.requests: list[dict] = []
        self.deny = False  # the person presses Cancel on the authorize page
        self._codes: dict[str, dict] = {}  # code -> {"redirect_uri", "client_id", "provider"}
        self._tokens: dict[str, Person] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self, dict(parse_qsl(urlsplit(self.path).query)))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                fake._handle(self, dict(parse_qsl(body, keep_blank_values=True)))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # --- settings pointing the providers here ------------------------------------------

    def configure(self, settings, *providers: str) -> None:
        """Turn on `providers` (github, google), pointed at this server (settings is
        pytest-django's fixture); the others are off."""
        app = [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET}]
        configured = {**settings.SOCIALACCOUNT_PROVIDERS}
        github = {**configured["github"], "APPS": [], "GITHUB_URL": f"{self.url}/github"}
        google = {
            **configured["google"],
            "APPS": [],
            "AUTHORIZE_URL": f"{self.url}/google/o/oauth2/v2/auth",
            "ACCESS_TOKEN_URL": f"{self.url}/google/token",
            "IDENTITY_URL": f"{self.url}/google/oauth2/v2/userinfo",
            "ID_TOKEN_ISSUER": f"{self.url}/google",
        }
        if "github" in providers:
            github["APPS"] = app
        if "google" in providers:
            google["APPS"] = app
        settings.SOCIALACCOUNT_PROVIDERS = {**configured, "github": github, "google": google}

    # --- the endpoints -----------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, params: dict) -> None:
        path = urlsplit(handler.path).path
        self.requests.append({"method": handler.command, "path": path, "params": params})
        routes = {
            ("GET", "/github/login/oauth/authorize"): lambda: self._authorize("github", params),
            ("POST", "/github/login/oauth/access_token"): lambda: self._token("github", params),
            ("GET", "/github/api/v3/user"): lambda: self._github_user(handler),
            ("GET", "/github/api/v3/user/emails"): lambda: self._github_emails(handler),
            ("GET", "/google/o/oauth2/v2/auth"): lambda: self._authorize("google", params),
            ("POST", "/google/token"): lambda: self._token("google", params),
            ("GET", "/google/oauth2/v2/userinfo"): lambda: self._google_userinfo(handler),
        }
        route = routes.get((handler.command, path))
        status, headers, payload = route() if route else (404, {}, {"message": "Not Found"})
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _authorize(self, provider: str, params: dict):
        if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
            return 400, {}, {"error": "invalid_request"}
        if self.deny:
            query = urlencode({"error": "access_denied", "state": params.get("state", "")})
            return 302, {"Location": f"{params['redirect_uri']}?{query}"}, {}
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"redirect_uri": params["redirect_uri"], "provider": provider, "person": self.person}
        query = urlencode({"code": code, "state": params.get("state", "")})
        return 302, {"Location": f"{params['redirect_uri']}?{query}"}, {}

    def _token(self, provider: str, params: dict):
        grant = self._codes.pop(params.get("code", ""), None)  # a code works once
        if (
            grant is None
            or grant["provider"] != provider
            or params.get("client_id") != CLIENT_ID
            or params.get("client_secret") != CLIENT_SECRET
            or params.get("redirect_uri") != grant["redirect_uri"]
        ):
            return 400, {}, {"error": "bad_verification_code"}
        person = grant["person"]
        token = secrets.token_urlsafe(24)
        self._tokens[token] = person
        if provider == "github":
            return 200, {}, {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        now = int(time.time())
        claims = {
            "iss": f"{self.url}/google",
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": person.uid,
            "email": person.email,
            "email_verified": person.verified,
            "name": person.name,
            "given_name": person.name.split()[0],
            "family_name": person.name.split()[-1],
            "iat": now,
            "exp": now + 3600,
        }
        # Google signs with RS256 and its certificates; a token from the token endpoint over TLS is
        # not checked for a signature (OpenID Connect Core 3.1.3.7), so any key shows the shape.
        id_token = jwt.encode(
            claims, "fake-google-signing-key-0123456789abcdef", algorithm="HS256", headers={"kid": "fake"}
        )
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "id_token": id_token}

    def _person(self, handler: BaseHTTPRequestHandler, scheme: str) -> Person | None:
        header = handler.headers.get("Authorization", "")
        return self._tokens.get(header[len(scheme) + 1 :]) if header.startswith(f"{scheme} ") else None

    def _github_user(self, handler):
        person = self._person(handler, "token")
        if person is None:
            return 401, {}, {"message": "Bad credentials"}
        return (
            200,
            {},
            {
                "login": person.login,
                "id": int(person.uid),
                "html_url": f"{self.url}/{person.login}",
                "name": person.name,
                "email": None,  # the public address; most people leave it empty
                "type": "User",
            },
        )

    def _github_emails(self, handler):
        person = self._person(handler, "token")
        if person is None:
            return 401, {}, {"message": "Bad credentials"}
        if not person.email:
            return 200, {}, []
        return 200, {}, [{"email": person.email, "primary": True, "verified": person.verified, "visibility": None}]

    def _google_userinfo(self, handler):
        person = self._person(handler, "Bearer")
        if person is None:
            return 401, {}, {"error": "invalid_token"}
        return (
            200,
            {},
            {"id": person.uid, "email": person.email, "verified_email": person.verified, "name": person.name},
        )

    # --- following the authorize redirect without a browser -----------------------------

    def approve(self, authorize_url: str) -> str:
        """GET the authorize URL as a browser would and return where it redirects (the callback)."""
        assert authorize_url.startswith(self.url), authorize_url
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(authorize_url, timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 302, (error.code, error.read())
            return error.headers["Location"]
        raise AssertionError("the authorize endpoint did not redirect")

    def __enter__(self) -> FakeOAuth:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

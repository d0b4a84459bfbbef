"""API tokens end with the password, against the running stack: an account registered over the
API logs in, logs out (that token then answers 401), logs in again, resets its password through
the mailed link (the web server prints mail to its log: EMAIL_URL is cleared for the stack) and
then changes it on the account page; after each change the earlier token answers 401, the old
password is refused and the new one logs in."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from http.client import HTTPConnection

from reliability.scenarios.common import Row
from testkit.http import http

ROW = "Tokens end with the password"
RESET_LINK = re.compile(r"/accounts/password/reset/key/([0-9a-z]+)-([^/\s\"<>=]+)/")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Page:
    """A browser on the site's pages: cookies kept by hand (they are Secure; the stack is plain
    http on loopback), redirects not followed."""

    def __init__(self, stack):
        self.netloc = urllib.parse.urlsplit(stack.base_url).netloc
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = HTTPConnection(self.netloc, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            reply = connection.getresponse()
            text = reply.read().decode(errors="replace")
            for value in reply.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = rest
            return reply.status, text
        finally:
            connection.close()

    def submit(self, path: str, form: dict[str, str]) -> int:
        """GET the page for its CSRF token, then POST the form to it."""
        _, html = self.request("GET", path)
        match = CSRF.search(html)
        if not match:
            return -1
        return self.request("POST", path, {"csrfmiddlewaretoken": match.group(1), **form})[0]


def run(stack) -> Row:
    started = time.monotonic()
    name = f"tokens{uuid.uuid4().hex[:10]}"
    email = f"{name}@example.com"
    first, second, third = (f"pw-{n}-{uuid.uuid4().hex}" for n in range(3))
    expected: dict[str, int] = {}
    answers: dict[str, int | None] = {}

    def check(case: str, want: int, got: int | None) -> None:
        expected[case], answers[case] = want, got

    def post(path: str, data: dict, token: str | None = None):
        headers = {"Content-Type": "application/json", **(stack.auth(token) if token else {})}
        return http("POST", stack.url(path), body=json.dumps(data).encode(), headers=headers)

    def login(password: str) -> tuple[int, str]:
        reply = post("/api/auth/login", {"email": email, "password": password})
        return reply.status, reply.json().get("access_token", "") if reply.status == 200 else ""

    def me(token: str) -> int:
        return stack.get("/api/auth/me", token).status

    check("register", 201, post("/api/auth/register", {"email": email, "username": name, "password": first}).status)
    status, token_a = login(first)
    check("login", 200, status)
    check("me with it", 200, me(token_a))
    check("logout", 204, post("/api/auth/logout", {}, token_a).status)
    check("me with the logged-out token", 401, me(token_a))
    check("logout again with it", 401, post("/api/auth/logout", {}, token_a).status)
    status, token_b = login(first)
    check("second login", 200, status)

    # Reset through the mailed link, read from the web server's log.
    log = stack.logs["gunicorn"]
    seen = log.stat().st_size
    check("reset asked", 202, post("/api/auth/password-reset", {"email": email}).status)
    link = None
    deadline = time.monotonic() + 10
    while link is None and time.monotonic() < deadline:
        with open(log, "rb") as file:
            file.seek(seen)
            link = RESET_LINK.search(file.read().decode(errors="replace"))
        time.sleep(0.1 if link is None else 0)
    if link is None:
        return Row(ROW, "no reset link in the web server's log", False, time.monotonic() - started)
    uid, key = link.groups()
    confirm = post("/api/auth/password-reset/confirm", {"uid": uid, "token": key, "new_password": second})
    check("reset with the mailed link", 200, confirm.status)
    check("me with the token from before the reset", 401, me(token_b))
    check("login with the old password", 401, login(first)[0])
    status, token_c = login(second)
    check("login with the new password", 200, status)
    check("me with the new token", 200, me(token_c))

    # Change it on the account page, logged in there.
    page = Page(stack)
    check("page login", 302, page.submit("/accounts/login/", {"login": name, "password": second}))
    changed = page.submit("/accounts/password/change/", {"oldpassword": second, "password1": third, "password2": third})
    check("page password change", 302, changed)
    check("me with the token from before the change", 401, me(token_c))
    check("the page session after its change", 200, page.request("GET", "/accounts/profile/")[0])
    status, token_d = login(third)
    check("login after the change", 200, status)
    check("me with that token", 200, me(token_d))

    wrong = [f"{case}: {answers[case]}, expected {want}" for case, want in expected.items() if answers[case] != want]
    figure = (
        f"{len(expected) - len(wrong)}/{len(expected)} answers as expected: logout 204, then that token 401 "
        f"(and a second logout 401); password reset through the mailed link: the earlier token 401, the old "
        f"password 401, the new one 200; change on the account page: the earlier token 401, that page still "
        f"logged in, the new password 200"
    )
    return Row(ROW, figure, not wrong, time.monotonic() - started, tuple(wrong), details=dict(answers))

"""Content-Security-Policy on every response.

Our pages load scripts, styles and images from our own origin only (no inline scripts, no
inline styles), so the policy allows 'self' and nothing else. The exceptions:

- media-src also allows blob: URLs: the dashboard measures a chosen song's length in the browser
  (an <audio> element on the file's object URL) to show its price before it is uploaded. A blob:
  URL only names data the page itself already holds.
- form-action also allows Stripe Checkout and Square's hosted checkout: the credits page posts
  to our own /credits/buy/, which answers 303 to checkout.stripe.com or a square.link payment
  link (which redirects on to checkout.square.site), and Chromium checks form-action on every
  redirect of a form submission, so without them the redirect is blocked. When SQUARE_API_BASE
  or STRIPE_API_BASE points at another host (a test's fake provider), that host serves the
  checkout pages too, so its origin is allowed as well. For the same reason it allows the
  sign-in pages of the configured social login providers (the log-in page's "Continue with
  GitHub" posts to our /accounts/github/login/, which redirects to GitHub's authorize page).
- With STORAGE_BACKEND=s3, stems and waveforms are redirects to presigned URLs of the bucket, so
  its origin is allowed for images, media and fetches.
- /api/docs/ is drf-spectacular's Swagger UI: its page has an inline <script> (carrying the
  CSRF token, so no fixed hash fits) and an inline <style>, and Swagger UI's React components
  set style attributes. It gets its own policy with 'unsafe-inline' for scripts and styles; it
  holds no user data and is still framed by nobody.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from accounts.social.selectors import social_login_origins

# Checkout, and the customer portal (the account page's "Manage subscription" posts to us, then 303).
STRIPE_CHECKOUT = "https://checkout.stripe.com https://billing.stripe.com"
SQUARE_CHECKOUT = "https://square.link https://*.square.link https://*.square.site"

_BASE = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "media-src": "'self' blob:",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": f"'self' {STRIPE_CHECKOUT} {SQUARE_CHECKOUT}",
    "frame-ancestors": "'none'",
}
_API_DOCS = {**_BASE, "script-src": "'self' 'unsafe-inline'", "style-src": "'self' 'unsafe-inline'"}


def _header(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = _header(_BASE)
API_DOCS_CONTENT_SECURITY_POLICY = _header(_API_DOCS)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def bucket_origin() -> str:
    """Where presigned URLs of the bucket point (STORAGE_BACKEND=s3); empty on local storage."""
    if settings.STORAGE_BACKEND != "s3":
        return ""
    if getattr(settings, "AWS_S3_CUSTOM_DOMAIN", None):
        return f"https://{settings.AWS_S3_CUSTOM_DOMAIN}"
    if settings.AWS_S3_ENDPOINT_URL:
        return _origin(settings.AWS_S3_ENDPOINT_URL)
    return "https://*.amazonaws.com"


def content_security_policy(*, api_docs: bool = False) -> str:
    """The policy for this configuration. Read at each response: which providers and which bucket
    are configured are settings (changed by the tests)."""
    directives = dict(_API_DOCS if api_docs else _BASE)
    if not api_docs:
        payment_hosts = [_origin(base) for base in (settings.STRIPE_API_BASE, settings.SQUARE_API_BASE) if base]
        extra = [*payment_hosts, *social_login_origins()]
        if extra:
            directives["form-action"] = " ".join([directives["form-action"], *extra])
    bucket = bucket_origin()
    if bucket:
        directives["img-src"] = f"'self' data: {bucket}"
        directives["media-src"] = f"{directives['media-src']} {bucket}"
        directives["connect-src"] = f"'self' {bucket}"
    return _header(directives)


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy unless the view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.api_docs_path = None

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            if self.api_docs_path is None:
                self.api_docs_path = reverse("api-docs")
            response["Content-Security-Policy"] = content_security_policy(api_docs=request.path == self.api_docs_path)
        return response

"""Content-Security-Policy on every response.

Our pages load scripts, styles and images from our own origin only (no inline scripts, no
inline styles), so the policy allows 'self' and nothing else. Two exceptions:

- form-action also allows Stripe Checkout: the credits page posts to our own /credits/buy/,
  which answers 303 to checkout.stripe.com, and Chromium checks form-action on every redirect
  of a form submission, so without it the redirect is blocked.
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

STRIPE_CHECKOUT = "https://checkout.stripe.com"

_BASE = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": f"'self' {STRIPE_CHECKOUT}",
    "frame-ancestors": "'none'",
}
_API_DOCS = {**_BASE, "script-src": "'self' 'unsafe-inline'", "style-src": "'self' 'unsafe-inline'"}


def _header(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = _header(_BASE)
API_DOCS_CONTENT_SECURITY_POLICY = _header(_API_DOCS)


def bucket_origin() -> str:
    """Where presigned URLs of the bucket point (STORAGE_BACKEND=s3); empty on local storage."""
    if settings.STORAGE_BACKEND != "s3":
        return ""
    if getattr(settings, "AWS_S3_CUSTOM_DOMAIN", None):
        return f"https://{settings.AWS_S3_CUSTOM_DOMAIN}"
    if settings.AWS_S3_ENDPOINT_URL:
        parts = urlsplit(settings.AWS_S3_ENDPOINT_URL)
        return f"{parts.scheme}://{parts.netloc}"
    return "https://*.amazonaws.com"


def policy_with_bucket(origin: str) -> str:
    if not origin:
        return CONTENT_SECURITY_POLICY
    return _header(
        {
            **_BASE,
            "img-src": f"'self' data: {origin}",
            "media-src": f"'self' {origin}",
            "connect-src": f"'self' {origin}",
        }
    )


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy unless the view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.api_docs_path = None
        self.policy = policy_with_bucket(bucket_origin())

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            if self.api_docs_path is None:
                self.api_docs_path = reverse("api-docs")
            policy = API_DOCS_CONTENT_SECURITY_POLICY if request.path == self.api_docs_path else self.policy
            response["Content-Security-Policy"] = policy
        return response

"""The mail to an endpoint's owner when it is disabled for failing too long. Sent after the
commit; a mail that cannot be sent is logged, never undoes the disabling."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from webhooks.models import Endpoint

logger = logging.getLogger(__name__)


def endpoint_disabled_notify(*, endpoint_id) -> None:
    try:
        endpoint = Endpoint.objects.select_related("user").get(pk=endpoint_id)
        user = endpoint.user
        if not user.email or not user.is_active:
            return
        context = {
            "SITE_NAME": settings.SITE_NAME,
            "user": user,
            "endpoint": endpoint,
            "days": settings.WEBHOOK_DISABLE_AFTER_DAYS,
            "page_url": f"{settings.SITE_URL}{reverse('webhooks')}" if settings.SITE_URL else "",
        }
        send_mail(
            subject=" ".join(render_to_string("webhooks/email/endpoint_disabled_subject.txt", context).split()),
            message=render_to_string("webhooks/email/endpoint_disabled_message.txt", context).strip() + "\n",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[user.email],
        )
    except Exception:
        logger.exception("Could not mail the owner of disabled webhook endpoint %s", endpoint_id)

"""Reads of webhooks, each for its owner only: anyone else's endpoint or delivery is a 404."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404

from webhooks.models import Attempt, Delivery, Endpoint


def endpoint_list_for_user(*, user):
    """The endpoints the user registered (one-off upload callbacks are not listed)."""
    return Endpoint.objects.filter(user=user, job=None).order_by("created_at")


def endpoint_get_for_user(*, user, endpoint_id) -> Endpoint:
    return get_object_or_404(Endpoint, pk=endpoint_id, user=user, job=None)


def delivery_list_for_user(*, user, endpoint_id=None, job_id=None):
    """The user's deliveries, newest first, with their endpoint and attempts in two more queries."""
    deliveries = Delivery.objects.filter(endpoint__user=user)
    if endpoint_id is not None:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    if job_id is not None:
        deliveries = deliveries.filter(job_id=job_id)
    return (
        deliveries.select_related("endpoint", "job")
        .prefetch_related(Prefetch("attempt_rows", queryset=Attempt.objects.order_by("number")))
        .order_by("-created_at")
    )


def delivery_get_for_user(*, user, delivery_id) -> Delivery:
    return get_object_or_404(Delivery.objects.select_related("endpoint"), pk=delivery_id, endpoint__user=user)

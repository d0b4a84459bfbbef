"""The webhooks page: register endpoints, see each delivery's attempts, rotate, enable, delete,
resend. A new secret is shown in the answer to the POST that made it, never put in a message
(messages may travel in a cookie)."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webhooks import services
from webhooks.models import Event
from webhooks.selectors import (
    delivery_get_for_user,
    delivery_list_for_user,
    endpoint_get_for_user,
    endpoint_list_for_user,
)

RECENT_DELIVERIES = 50


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL", max_length=2000, widget=forms.URLInput(attrs={"placeholder": "https://"})
    )
    events = forms.MultipleChoiceField(
        label="Events", choices=Event.choices, initial=list(Event.values), widget=forms.CheckboxSelectMultiple
    )


def _page(request, *, form=None, new_secret=None, status=200):
    context = {
        "form": form or EndpointForm(),
        "endpoints": endpoint_list_for_user(user=request.user),
        "deliveries": delivery_list_for_user(user=request.user)[:RECENT_DELIVERIES],
        "new_secret": new_secret,
        "disable_days": settings.WEBHOOK_DISABLE_AFTER_DAYS,
    }
    return render(request, "webhooks/webhooks.html", context, status=status)


@login_required
def webhooks_page(request):
    if request.method != "POST":
        return _page(request)
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    try:
        endpoint = services.endpoint_create(
            user=request.user, url=form.cleaned_data["url"], events=form.cleaned_data["events"]
        )
    except services.WebhookRefused as refused:
        form.add_error("url", str(refused))
        return _page(request, form=form, status=400)
    return _page(request, new_secret=endpoint)


@login_required
@require_POST
def endpoint_rotate(request, endpoint_id):
    endpoint = services.endpoint_rotate_secret(
        endpoint=endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id)
    )
    return _page(request, new_secret=endpoint)


@login_required
@require_POST
def endpoint_enable(request, endpoint_id):
    endpoint = services.endpoint_enable(endpoint=endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id))
    messages.success(request, f"{endpoint.url} is enabled again.")
    return redirect("webhooks")


@login_required
@require_POST
def endpoint_delete(request, endpoint_id):
    endpoint = endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id)
    services.endpoint_delete(endpoint=endpoint)
    messages.success(request, f"{endpoint.url} was deleted.")
    return redirect("webhooks")


@login_required
@require_POST
def delivery_resend(request, delivery_id):
    delivery = delivery_get_for_user(user=request.user, delivery_id=delivery_id)
    try:
        services.delivery_resend(delivery=delivery)
    except services.WebhookRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"The {delivery.event} delivery for {delivery.endpoint.url} will be sent again now.")
    return redirect("webhooks")

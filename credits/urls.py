from django.urls import path

from credits import api, views

urlpatterns = [
    path("", views.credits_page, name="credits"),
    path("buy/", views.buy, name="credits-buy"),
    path("success/", views.checkout_success, name="credits-success"),
    path("cancelled/", views.checkout_cancelled, name="credits-cancel"),
    path("subscribe/", views.subscribe, name="credits-subscribe"),
    path("subscription/manage/", views.subscription_manage, name="subscription-manage"),
]

api_urlpatterns = [
    path("balance", api.balance, name="api-credits-balance"),
    path("packages", api.packages, name="api-credits-packages"),
    path("purchase", api.purchase, name="api-credits-purchase"),
    path("history", api.HistoryView.as_view(), name="api-credits-history"),
    path("history/export", api.history_export, name="api-credits-history-export"),
]

# Mounted at /api/payments/: the providers' webhooks.
payments_api_urlpatterns = [
    path("stripe/webhook", api.stripe_webhook, name="api-payments-stripe-webhook"),
    path("square/webhook", api.square_webhook, name="api-payments-square-webhook"),
]

# Mounted at /api/.
subscriptions_api_urlpatterns = [
    path("subscriptions", api.subscribe, name="api-subscriptions"),
    path("subscriptions/portal", api.subscription_portal, name="api-subscriptions-portal"),
]

from django.urls import path

from credits import api, views

urlpatterns = [
    path("", views.credits_page, name="credits"),
    path("buy/", views.buy, name="credits-buy"),
]

api_urlpatterns = [
    path("balance", api.balance, name="api-credits-balance"),
    path("packages", api.packages, name="api-credits-packages"),
    path("purchase", api.purchase, name="api-credits-purchase"),
    path("history", api.HistoryView.as_view(), name="api-credits-history"),
]

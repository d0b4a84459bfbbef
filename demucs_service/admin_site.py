"""The Django admin under the product's name: its header and title say SITE_NAME, and
django-allauth's email addresses are listed in our Accounts section rather than in a second
section of the same name."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

# App labels whose models are shown in another app's section: allauth's "account" (email
# addresses) beside our "accounts" (users).
MERGED_SECTIONS = {"account": "accounts"}


class SiteAdmin(admin.AdminSite):
    @property
    def site_header(self):
        return f"{settings.SITE_NAME} administration"

    @property
    def site_title(self):
        return f"{settings.SITE_NAME} admin"

    index_title = "Operations"

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        by_label = {app["app_label"]: app for app in apps}
        for source, target in MERGED_SECTIONS.items():
            if source in by_label and target in by_label:
                by_label[target]["models"] = sorted(
                    by_label[target]["models"] + by_label[source]["models"], key=lambda model: model["name"]
                )
                apps.remove(by_label[source])
        return apps


class SiteAdminConfig(AdminConfig):
    default_site = "demucs_service.admin_site.SiteAdmin"

from django import forms

from accounts.models import User


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["email_on_job_finished"]
        labels = {"email_on_job_finished": "Email me when a separation completes or fails"}

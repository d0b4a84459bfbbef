from django import forms

from accounts.models import User


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["email_on_job_finished"]
        labels = {"email_on_job_finished": "Email me when a separation completes or fails"}


class APIKeyForm(forms.Form):
    EXPIRY_CHOICES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]

    name = forms.CharField(max_length=50, label="Name", help_text="What the key is for, e.g. “my laptop script”.")
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires"
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")  # the labels are the fields' accessible names: "Name", not "Name:"
        super().__init__(*args, **kwargs)

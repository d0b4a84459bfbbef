"""Logged-out tokens are forgotten once they have expired, daily, on the maintenance cluster."""

from django.db import migrations

NAME = "Forget expired logged-out tokens"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "accounts.tasks.revoked_tokens_purge",
            "schedule_type": "D",
            "repeats": -1,
            "cluster": "maintenance",
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_token_revocation"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

"""Due webhook deliveries (retries) are sent every minute, on the maintenance cluster."""

from django.db import migrations

NAME = "Send due webhook deliveries"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "webhooks.tasks.deliveries_send_due",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
            "cluster": "maintenance",
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

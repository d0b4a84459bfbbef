"""The reaper and the cleanup run on the maintenance cluster (Q_CLUSTER_NAME=maintenance), so they
never wait behind a separation, under the names of the services they call."""

from django.db import migrations

RENAMED = {
    "separation.tasks.reap_jobs": "separation.tasks.jobs_reap",
    "separation.tasks.delete_expired_job_files": "separation.tasks.jobs_delete_expired",
}


def to_maintenance(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in RENAMED.items():
        Schedule.objects.filter(func=old).update(func=new, cluster="maintenance")


def back(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in RENAMED.items():
        Schedule.objects.filter(func=new).update(func=old, cluster=None)


class Migration(migrations.Migration):
    dependencies = [("separation", "0003_attempts_budget_fingerprint_storage")]

    operations = [migrations.RunPython(to_maintenance, back)]

from django.urls import path

from separation import api, export_api, mix_api, views

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/jobs/", views.job_list_partial, name="job-list-partial"),
    path("upload/", views.upload, name="upload"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
    path("jobs/<uuid:job_id>/status/", views.job_status_partial, name="job-status-partial"),
    path("jobs/<uuid:job_id>/analysis/", views.job_analysis_partial, name="job-analysis-partial"),
    path("jobs/<uuid:job_id>/waveform/<str:stem>.png", views.waveform, name="job-waveform"),
    path("jobs/<uuid:job_id>/delete/", views.delete, name="job-delete"),
    path("jobs/<uuid:job_id>/full-song/", views.full_song, name="job-full-song"),
    path("jobs/<uuid:job_id>/mix/", views.mix, name="job-mix"),
]

api_urlpatterns = [
    path("models", api.models, name="api-models"),
    path("upload", api.upload, name="api-upload"),
    path("status/<uuid:job_id>", api.job_status, name="api-status"),
    path("jobs", api.JobListView.as_view(), name="api-jobs"),
    path("jobs/export", export_api.jobs_export, name="api-jobs-export"),
    path("download/<uuid:job_id>", api.download, name="api-download"),
    path("download/<uuid:job_id>/<str:stem>", api.download_stem, name="api-download-stem"),
    path("jobs/<uuid:job_id>/mix", mix_api.mix, name="api-mix"),
    path("job/<uuid:job_id>", api.delete_job, name="api-job"),
    path("jobs/<uuid:job_id>/full-song", api.full_song, name="api-full-song"),
]

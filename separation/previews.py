"""A free preview's "Separate the full song": the paid job of the song the preview was cut from,
made from the song the preview kept, so nothing is uploaded again. Once per preview.

The upload of a preview is separation/uploads.py (upload_accept with JobOptions(preview=True)).
"""

from __future__ import annotations

from django.core.files import File

from accounts.selectors import user_needs_email_verification
from separation.catalog import job_cost
from separation.job_files import local_copy
from separation.models import Job
from separation.services import FullSongExists, job_create
from separation.upload_errors import EmailNotVerified, NotAPreview, NotEnoughCredits
from separation.uploads import JobOptions, audio_measure, job_options_validate, storage_estimate_for


def preview_full_song(*, preview: Job) -> tuple[Job, bool]:
    """The paid job of `preview`'s whole song, charged like an upload of it with the preview's
    options: (job, True) when made now, (job, False) when it was made before. Raises the upload's
    refusals (NotEnoughCredits, StorageQuotaExceeded, ...) or NotAPreview."""
    if not preview.is_preview:
        raise NotAPreview("This job is not a preview: it separated the whole song already.")
    if preview.full_song_job_id is not None:
        return Job.objects.get(pk=preview.full_song_job_id), False
    user = preview.user
    if user_needs_email_verification(user=user):
        raise EmailNotVerified()
    options = JobOptions(model=preview.model, stems=preview.stem_mode, output_format=preview.output_format)
    model = job_options_validate(options=options)
    cheapest = job_cost(model=model, duration_seconds=0)
    if user.credits < cheapest:  # before decoding the song for nothing
        raise NotEnoughCredits(balance=user.credits, required=cheapest)
    with local_copy(preview.source_file) as path:
        if path is None:
            raise NotAPreview("The song of this preview has been deleted. Upload it again to separate it.")
        audio = audio_measure(path=path)
        with open(path, "rb") as song:
            try:
                job = job_create(
                    user=user,
                    uploaded_file=File(song, name=preview.original_filename),
                    audio=audio,
                    model=model,
                    stem_mode=options.stems,
                    output_format=options.output_format,
                    storage_estimate=storage_estimate_for(
                        input_bytes=path.stat().st_size, audio=audio, options=options, model=model
                    ),
                    full_song_of=preview,
                )
            except FullSongExists as made:  # a concurrent request made it first
                return Job.objects.get(pk=made.job_id), False
    return job, True

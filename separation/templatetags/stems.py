"""Template filters for the job pages: stems by their names for people, and times in seconds."""

from django import template

from separation.catalog import stem_label as _stem_label

register = template.Library()


@register.filter
def stem_label(name: str) -> str:
    return _stem_label(name)


@register.filter
def clock(seconds) -> str:
    """3:05, or 1:02:09 past an hour."""
    total = int(float(seconds or 0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def stem_labels(names) -> str:
    """["vocals", "no_vocals"] -> "vocals and instrumental (no vocals)", for a sentence."""
    labels = [_stem_label(name).lower() for name in names]
    return " and ".join([", ".join(labels[:-1]), labels[-1]]) if len(labels) > 1 else "".join(labels)

"""The client's file name: made safe to show and to put in a download name, and the short
extension a stored upload keeps."""

import re
import unicodedata
from pathlib import PurePosixPath


def display_filename(name: str) -> str:
    """No folders, no control characters, at most 255 characters (keeping the extension)."""
    name = PurePosixPath(name.replace("\\", "/")).name
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C").strip(" .")
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        name = f"{stem[: 254 - len(extension)]}.{extension}" if dot and len(extension) <= 10 else name[:255]
    return name or "upload"


def storage_extension(filename: str) -> str:
    """A short alphanumeric extension from the client's name, or none: never a path part."""
    extension = PurePosixPath(filename).suffix.lower()
    return extension if re.fullmatch(r"\.[a-z0-9]{1,5}", extension) else ""

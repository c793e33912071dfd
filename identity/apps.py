from __future__ import annotations

from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity and biometrics"

    def ready(self) -> None:
        from django.conf import settings
        from PIL import Image, ImageFile

        # Pillow's own bomb check, process-wide, at the photo limit: beyond twice this any
        # decode in the process fails, whichever code path opened the image.
        Image.MAX_IMAGE_PIXELS = settings.FACE_PHOTO_MAX_PIXELS
        # Never decode a half-sent file with its missing part filled in (face_recognition
        # turns this on at import; identity/embeddings.py puts it back).
        ImageFile.LOAD_TRUNCATED_IMAGES = False

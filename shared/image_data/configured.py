"""The image store the settings name: every writer of images' data (the gateways' uploads,
``stratus image import``, ``stratus up``'s built guest) opens it here, so that they all
write where the image API reads."""

from __future__ import annotations

from shared.config import Settings
from shared.image_data import ImageData
from shared.image_data.filesystem import DirectoryImageData


class MissingExtra(Exception):
    """The settings ask for a store whose client library is not installed."""


def open_image_data(settings: Settings) -> ImageData:
    """The bucket of STRATUS_IMAGE_S3_BUCKET when it is set, else the directory store under
    STRATUS_IMAGE_STORE_DIR (or the data directory)."""
    if settings.image_s3_bucket is None:
        return DirectoryImageData(settings.image_store)
    try:  # the s3 extra: gateways that keep images in a directory do without it
        from shared.image_data.s3 import S3ImageData
    except ImportError as exc:
        raise MissingExtra(
            "STRATUS_IMAGE_S3_BUCKET needs the s3 extra: pip install 'stratus[s3]'"
        ) from exc
    secret = settings.image_s3_secret_key
    return S3ImageData(
        settings.image_s3_bucket,
        endpoint_url=settings.image_s3_endpoint,
        access_key=settings.image_s3_access_key,
        secret_key=None if secret is None else secret.get_secret_value(),
        region=settings.image_s3_region,
        part_size=settings.image_s3_part_size_mb << 20,
    )

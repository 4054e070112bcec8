"""The image store the settings name: every writer of images' data (the gateways' uploads,
``stratus image import``, ``stratus up``'s built guest) opens it here, so that they all
write where the image API reads."""

from __future__ import annotations

from shared.config import Settings
from shared.image_data import ImageData
from shared.image_data.filesystem import DirectoryImageData


def open_image_data(settings: Settings) -> ImageData:
    """The directory store under STRATUS_IMAGE_STORE_DIR (or the data directory)."""
    return DirectoryImageData(settings.image_store)

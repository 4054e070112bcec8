"""Images brought through the image service API, as `openstack image create --file` brings
them: created, then their data uploaded."""

from __future__ import annotations

from tests.support.client import ComputeClient


async def uploaded_image(api: ComputeClient, data: bytes, name: str = "uploaded") -> str:
    """A new qcow2 image of ``api``'s project holding ``data``; its id."""
    created = await api.request(
        "POST",
        f"{api.url}/image/v2/images",
        {"name": name, "disk_format": "qcow2", "container_format": "bare"},
    )
    assert created.status == 201, created
    image_id: str = created.body["id"]
    uploaded = await api.request(
        "PUT",
        f"{api.url}/image/v2/images/{image_id}/file",
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )
    assert uploaded.status == 204, uploaded
    return image_id

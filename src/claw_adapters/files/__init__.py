"""Files on this machine: the workspace browser and `/api/file` (see `claw_core.services.file_policy`)."""

from claw_adapters.files.local import LocalDiskFiles

__all__ = ["LocalDiskFiles"]

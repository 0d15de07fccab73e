"""Adobe Campaign Standard + Adobe IMS + Adobe I/O Events journal emulator (dev/test only).
See `emulator.py` for the routes and behaviour, `seed.py` for the event body."""

from .emulator import CampaignEmulator
from .schema import DataError

__all__ = ["CampaignEmulator", "DataError"]

"""The version of fleetjobs, on its own floor: a worker reads it without importing the facade."""

from __future__ import annotations

__version__ = "0.4.0"

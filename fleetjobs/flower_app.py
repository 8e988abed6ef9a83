"""A Celery app for Flower to watch the fleet: ``celery -A fleetjobs.flower_app flower``.

Flower must read the broker with the fleet's own settings (its key prefix above all), or it
sees no events; this module builds that app from ``FLEETJOBS_*`` variables. Workers send task
events (``-E`` is on), and tasks carry the job's name and host (``Nap@web01``) as their name.
"""

from __future__ import annotations

from .celery_app import make_celery
from .config import Config

app = make_celery(Config.from_env())

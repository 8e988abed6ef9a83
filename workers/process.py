"""The write path as one worker process holds it: its own Redis connection and layers.

Connections must not cross a fork: a prefork pool's child that used its parent's sockets
would read answers meant for another process. Each process makes its own on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fleetjobs.config import Config
from fleetjobs.dispatch import Dispatcher
from fleetjobs.lifecycle import Lifecycle
from fleetjobs.records import Records
from fleetjobs.registry import Registry
from fleetjobs.store import Store

if TYPE_CHECKING:
    from celery import Celery


class Layers:
    """One process's store, registry (reads), lifecycle, records and dispatcher."""

    def __init__(self, config: Config, app: Celery | None = None) -> None:
        self.config = config
        self.store = Store.connect(config)
        self.registry = Registry(self.store)
        self.lifecycle = Lifecycle(self.store)
        self.records = Records(self.store)
        self.dispatcher = Dispatcher(config, self.registry, self.lifecycle, app)


class PerProcess:
    """Gives the calling process its own :class:`Layers`, made after any fork."""

    def __init__(self, config: Config, app: Celery | None = None) -> None:
        self.config = config
        self.app = app
        self._pid = -1
        self._layers: Layers | None = None

    def __call__(self) -> Layers:
        if self._layers is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._layers = Layers(self.config, self.app)
        return self._layers

    def release(self, ids: list[int]) -> None:
        """Publish children that a finish or a sweep released."""
        if ids:
            self().dispatcher.release(ids)

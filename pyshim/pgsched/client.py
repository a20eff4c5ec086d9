"""The scheduler over HTTP: ``RemoteScheduler(url)`` speaks to a pgsched (or compatible) server."""

from .api.client import APIError, RemoteException, RemoteScheduler, TransientRemoteException

__all__ = ["RemoteScheduler", "RemoteException", "TransientRemoteException", "APIError"]

"""The worker: the App that declares subscribers and services (app.py, subscriber.py), the
consume loop that runs each subscriber (consumer.py, with its handler slots and fetch gate),
and the worker's policies as middlewares in one chain (middleware/)."""

from mqkit.worker.app import App
from mqkit.worker.fetch_gate import RateLimit
from mqkit.worker.middleware.stats import Stats
from mqkit.worker.subscriber import SubscriberSpec

__all__ = ["App", "RateLimit", "Stats", "SubscriberSpec"]

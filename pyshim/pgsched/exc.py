"""Errors raised by the scheduler, with the class names clients re-raise by."""


class SchedulerException(Exception):
    """Base class of the scheduler's own errors."""


class StaleData(SchedulerException):
    """An optimistic-concurrency write found the stored row changed meanwhile."""


class UnknownPolicy(SchedulerException):
    """grab_next_visits was asked for a policy it does not know."""


class DatabaseUnavailable(Exception):
    """The database could not be reached (answered as 503 over RPC)."""


__all__ = ["SchedulerException", "StaleData", "UnknownPolicy", "DatabaseUnavailable"]

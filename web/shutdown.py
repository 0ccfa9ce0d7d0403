"""Graceful shutdown: uvicorn's WebSocket protocol, closing with 1001 when the server stops.

On SIGTERM or SIGINT uvicorn stops listening, asks every connection to shut down, waits up to
SHUTDOWN_GRACE_SECONDS for them, then runs the app's lifespan shutdown. An HTTP connection
finishes its request first. A WebSocket would be closed with 1012 (service restart); this
protocol closes it with 1001 (going away) instead, the code clients take as "reconnect
elsewhere", and lets the closing handshake complete like an app-initiated close.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

GOING_AWAY = 1001
GOING_AWAY_REASON = "server shutting down"


class GoingAwayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, except that a server shutdown sends 1001."""

    def shutdown(self) -> None:
        if not self.handshake_complete or self.close_sent or self.transport.is_closing():
            super().shutdown()
            return
        self.stop_keepalive()
        try:
            self.conn.send_close(GOING_AWAY, GOING_AWAY_REASON)
        except InvalidState:
            super().shutdown()
            return
        # What the app's own `websocket.close` does: tell the app, send the frame, and wait
        # for the client's reply (the server waits for the connection, up to the grace period).
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": GOING_AWAY, "reason": GOING_AWAY_REASON}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

"""The blotter stream: a replica of every object on every worker, streamed over WebSocket."""

from web.blotter.service import BlotterService, install_blotter

__all__ = ["BlotterService", "install_blotter"]

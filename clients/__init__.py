"""Clients of the whisper-streamer protocol (docs/protocol.md); they never import the daemon."""

"""Transcript and caption files (SRT, WebVTT, JSON, TXT): the standard library only, below model, streamer and clients."""

"""Whisper in plain PyTorch: weights, features, tokenizer, network, decoding, transcription.

This package knows nothing of sockets or streams; `streamer` builds on it.
"""

"""whisper-streamer's daemon: protocol v1 over WebSocket, on the Whisper model in `model`.

Layers: `protocol` (messages, codec, order state machine) → `session` (one stream: buffer, VAD,
commit policy) → `scheduler`/`worker` (batched decoding in the model's own thread) → `server`
(asyncio websockets, HTTP routes). Only `server` and `__main__` do I/O.
"""

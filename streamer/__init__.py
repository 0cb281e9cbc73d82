"""whisper-streamer's daemon: protocol v1 over WebSocket, on the Whisper model in `model`.

A folder per layer, imports going down the list:

- `protocol`, `config`: the messages, codecs and order state machine; the settings.
- `stream`: one stream's logic, plain code without I/O or a model (`stream.session.Session`:
  audio in, tick requests out, results in, messages out; `stream.tick`: the request and
  hypothesis a session and the engine exchange).
- `engine`: the model worker thread that owns the model (`engine.worker`) and the scheduler
  that feeds it batches from the event loop (`engine.scheduler`), with the load it records.
- `state`: what outlives a connection: the journal of stable text, the store a stream moves
  between replicas through, the handover plan.
- `server`: the asyncio layer: websocket connections to sessions, HTTP routes, auth, limits,
  resume. `interfaces`: other services' protocols (Deepgram, OpenAI, Wyoming), each a thin
  translation onto the same sessions.

Only `server`, `interfaces`, `state` and `__main__` do I/O.
"""

"""The host of the streams and the asyncio server around it.

`host` is what every interface sees (`StreamHost`, `MessageSink`, `Stream`); `registry` is the
host (admission, resume, the journal → store → send order, with `output` for the last); `daemon`
listens, routes each connection to its interface, keeps house and shuts down. Beside them: HTTP
routes and the page (`http`), keys and tokens (`auth`), rate and admission limits (`limits`),
parked streams a client resumes (`resume`).
"""

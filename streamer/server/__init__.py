"""The asyncio layer: websocket connections to sessions and the model worker (`daemon`), HTTP
routes and the page (`http`), keys and tokens (`auth`), rate and admission limits (`limits`),
detached sessions a client resumes (`resume`)."""

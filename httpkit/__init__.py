"""HTTP plumbing shared by every server here: the inference server, the jobs API, the
agent and the alert receiver.

- :mod:`httpkit.connections`: uvicorn's h11 protocol with a header (or whole-exchange)
  deadline and a connection cap that names itself in its 503.
- :mod:`httpkit.bodylimit`: an ASGI cap on request bodies (413 before they are read).
- :mod:`httpkit.background`: an ASGI app on uvicorn from a daemon thread, bound at
  construction, bounded as above.

It depends on uvicorn, h11 and Starlette only: nothing of ours.
"""

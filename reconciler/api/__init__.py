"""The HTTP API: a second front end over the same ``ops`` verbs as the CLI (FastAPI, served by uvicorn).

``app.create_app`` builds the application; one module per group of routes (``resources``: apply,
diff, events, Jobs and Services; ``services``: scale and rollouts; ``tasks``: tasks and their logs;
``nodes``; ``namespaces``; ``health``; ``metrics``), with what they share: ``auth`` (the bearer token
of each request, ``ops.tokens``), ``errors`` (every failure as JSON ``{"error", "message",
"details"}``), ``lists`` (label selectors, pages, watches and progress streams), ``stores`` (the
store connections handlers use), ``limits`` (bodies over 10 MiB refused) and ``schemas`` (the
documented shapes of what routes return). ``server`` runs it (``brokerctl server``). A handler
parses the request, checks the caller's role, calls one verb and returns what it returns; nothing
is decided here that the CLI decides in ``ops``. Imported only by ``brokerctl server``: FastAPI,
uvicorn and prometheus-client never load for the other commands.
"""

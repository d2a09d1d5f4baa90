"""The CLI as a client of `brokerctl server`: where the server is and with which token (``config``:
contexts, `login`, the environment), the HTTP connection (``http``) and the verbs over HTTP
(``remote``), which hand the CLI the same objects the local verbs do so that one rendering code
prints both.

Called by the CLI's commands when a server is configured (``cli.common.remote``). Imports only the
standard library, PyYAML (the config file) and the vocabulary (``views``, ``kinds``, ``errors``, the
light ``ops.refs``/``ops.listing``): no pydantic, no Docker SDK, no database driver, so a remote
command starts fast.
"""

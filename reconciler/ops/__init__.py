"""The user's verbs, returning result objects: what every front end (the CLI, later the API) calls."""

"""Docker hosts: the only package that imports the Docker SDK."""

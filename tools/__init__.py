"""Developer tooling run by make targets (`make lock`, `make audit`); not part of the server."""

"""Developer tooling, not needed in production: the `make run` supervisor and the embedded
Redis it (and the test suite) starts when no Redis is configured."""

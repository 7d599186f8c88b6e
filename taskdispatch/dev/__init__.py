"""The command line and developer tooling: the `taskdispatch` command (`run`, `check`,
`consistency`), the `make run` supervisor, and the embedded Redis it (and the test suite)
starts when no Redis is configured."""

"""The engine as an HTTP service (`escrow serve`, docs/http-contract.md): the same command
models, handlers, refusals and queries as the Python API; this package only translates HTTP to
them and back, and decides nothing itself."""

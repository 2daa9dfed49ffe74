"""The `commune-bus` command line: validate, publish, tail, dlq, simulate, topics, schemas."""

"""shared room: the one implementation of the I/O every room needs (see docs/architecture.md)."""

"""The TLS family: wire format, ClientHellos, the raw scan and its handshake confirmation, suites, certificates."""

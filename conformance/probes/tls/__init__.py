"""The TLS family: wire format, ClientHellos, the raw scan, the suites registry, certificates, the stdlib handshake."""

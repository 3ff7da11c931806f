"""Transport every probe stands on: outcomes and errors, bounded reads, TCP under a per-host budget, the stdlib TLS upgrade, probe config."""

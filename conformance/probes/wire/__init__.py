"""Transport every probe stands on: outcomes and errors, bounded reads, TCP connections under a per-host budget, probe config."""

"""mailconform: a conformance test suite for secure mail gateways."""

from conformance import dnssec_feature  # noqa: F401 - dns.dnssec needs this before its first import

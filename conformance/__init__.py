"""mailconform: a conformance test suite for secure mail gateways."""


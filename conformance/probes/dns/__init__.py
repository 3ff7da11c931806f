"""DNS lookups for mail: MX resolution."""

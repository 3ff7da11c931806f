"""The outbound family: the suite as the far end of the gateway's mail — its signed zone, its MX hosts."""

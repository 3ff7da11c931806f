"""The STARTTLS family: bringing a connection to its ClientHello, state reset across the upgrade, injection."""

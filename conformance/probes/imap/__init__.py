"""IMAP client sessions and IMAP responses on the wire (RFC 9051)."""

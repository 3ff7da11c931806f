"""SMTP client sessions and SMTP replies on the wire (RFC 5321)."""

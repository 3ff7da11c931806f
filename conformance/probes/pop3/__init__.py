"""POP3 client sessions and POP3 replies on the wire (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034)."""

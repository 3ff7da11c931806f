"""The dns family: mail domain records fetched concurrently, MX, SPF, DMARC, TLS-RPT, DKIM, SRV, DNSSEC, DANE,
MTA-STS (the policy fetched over HTTPS)."""

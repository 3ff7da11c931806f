"""What an SMTP server lets through: open relay, unauthenticated submission, spoofing, smuggling."""

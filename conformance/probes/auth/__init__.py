"""The authentication family: logins, SASL exchanges and posture, user enumeration."""

"""The authentication family: logins, SASL mechanisms and posture, user enumeration and its timing judgement."""

"""The lockout family: lockout sequences on the dedicated account, and lockout across an auth outage."""

"""The embedded reference gateway: demo target and self-test target, with switchable flaws."""

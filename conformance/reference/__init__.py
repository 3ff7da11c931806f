"""The embedded reference gateway: demo target and self-test target, with switchable flaws.

    from conformance.reference.gateway import Gateway
    from conformance.reference.flaws import FLAWS, Flaws, FlawInfo

    with Gateway(flaws=("no_starttls",), workdir=tmp) as gw:   # start()/stop() without the with-block
        gw.ports[("node1", "mx")]             # mx, submission, submissions, imap, imaps on node1/node2
        gw.write_target(tmp / "target.toml")  # CA trust anchor, password files, policy, per-node hooks
        gw.accounts["test"]                   # (username, password); roles test, lockout, other
        gw.outage("node1", "delivery", down=True)   # node, delivery, auth, directory, stall
        gw.mailbox("alice@example.test")      # delivered messages (one store behind both nodes)
        gw.set_flaws(["tls1_0"]); gw.reset()  # same ports; reset: lockout state, mail, outages
        gw.check_errors()                     # re-raise what the servers raised

Modules: gateway (lifecycle, listeners, target file), smtp (aiosmtpd subclass + policy hooks), imap
(a small IMAP4rev1 server), lockout (the auth engine both protocols share), pki and tlsconf
(certificates and SSL contexts per flaw), store, outage, runtime (what a node's sessions share),
statuscodes (named replies), control (the loopback channel the target's hooks use), dns (MX records).
"""

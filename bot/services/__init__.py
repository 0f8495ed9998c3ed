"""The services: what happens to an invoice, split by job, over the domain's rules.

    invoices.py   creating invoices, finding them, cancelling, the sandbox's payment
    sync.py       keeping statuses in sync: poll, apply a status, renew an attempt
    callbacks.py  a gateway's callback: a merged, budgeted re-read
    access.py     roles, merchants, user preferences
    reports.py    the /report CSV and the admins' daily summary
    alerts.py     admin alerts (credentials, setup, mismatches)
    watcher.py    the poll loop: claims due invoices, paced per gateway, and checks them
    core.py       what they share: storage, gateways, policy, clock, the outbox
    payments.py   the facade handlers, the watcher and the web server call

They speak to storage through the Repository interface and to gateways through the Gateway
port only: no Telegram, no HTTP, no SQL here (tests/test_layers.py checks).
"""

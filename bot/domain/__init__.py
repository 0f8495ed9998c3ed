"""The domain: what an invoice is and the rules it moves by.

Imports nothing of Telegram, HTTP or SQL (tests/test_layers.py checks): the invoice model,
statuses and the transitions between them, money, and the pure rules of when to poll and
what to notify. Services apply these rules; adapters (gateways, storage, Telegram) never
decide them.
"""

"""The Telegram side: handlers (updates in), views (invoices as text, buttons and QR codes),
the notifier (the outbox out, paced), and the typed context handlers reach services through.

Handlers call services only (tests/test_layers.py checks); nothing here decides a payment.
"""

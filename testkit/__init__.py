"""The test kit: local fakes of everything Tillbot talks to, never shipped into production.

`testkit.telegram` is the Telegram Bot API emulator; `testkit.mion`, `testkit.mixpay` and
`testkit.miraclepay` are the gateway simulators (their wire formats, after the public docs);
`testkit.tls` is the local HTTPS front. The tests, `bench/` and the demo use them; the bot's
production modules never import this package (`tests/test_testkit_boundary.py`).
"""

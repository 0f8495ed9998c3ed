"""`python -m testkit.telegram`: the Bot API emulator alone, for a bot in another process."""

from testkit.telegram.emulator import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bot` at the command line: settings errors are one clear line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKEN

ROOT = Path(__file__).resolve().parent.parent


def run_bot(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "TELEGRAM_",
                "DATABASE_",
                "ADMIN_",
                "MERCHANT_",
                "MION_",
                "MIXPAY_",
                "MIRACLEPAY_",
                "DEFAULT_",
            )
        )
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "not a token"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "ADMIN_IDS": "12,abc"}, "ADMIN_IDS"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "MAX_AMOUNT": "NaN"}, "MAX_AMOUNT"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "DEFAULT_GATEWAY": "mion"}, "DEFAULT_GATEWAY"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": "ftp://x"}, "TELEGRAM_API_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "POLL_INTERVAL_SECONDS": "0"}, "POLL_INTERVAL_SECONDS"),
        # Webhook mode: Telegram and MixPay call only HTTPS URLs (issue 11).
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "HTTP_PORT": "8080", "PUBLIC_URL": "http://bot.example"},
         "PUBLIC_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "MIXPAY_PAYEE_ID": "p", "MIXPAY_SETTLEMENT_ASSET_ID": "s",
          "MIXPAY_QUOTE_ASSET_ID": "4d8c508b-91c5-375b-92b0-ee702ed2dac5"},
         "MIXPAY_QUOTE_ASSET_ID"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "MIXPAY_PAYEE_ID": "p", "MIXPAY_SETTLEMENT_ASSET_ID": "s",
          "MIXPAY_PAYMENT_ASSET_ID": "6cfe566e-4aad-470b-8c9a-2fd35b49c68d"},
         "MIXPAY_PAYMENT_ASSET_ID"),
    ],
)
def test_bad_settings_stop_with_one_line_and_status_2(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    result = run_bot(env, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert "MARKER" not in result.stderr + result.stdout


def test_settings_from_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nADMIN_IDS=oops\n")
    result = run_bot({}, tmp_path)
    assert result.returncode == 2 and "ADMIN_IDS" in result.stderr


def test_unreachable_telegram_is_one_line_without_the_token(tmp_path: Path) -> None:
    result = run_bot(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": "http://127.0.0.1:9",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        },
        tmp_path,
    )
    assert result.returncode != 0
    assert TOKEN not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr

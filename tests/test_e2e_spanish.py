"""End to end over the Bot API emulator in Spanish (issue 13): a Spanish merchant and a
Spanish-speaking customer (Telegram's `language_code` es, es-MX) get every step in Spanish,
with Spanish numbers, amounts, dates and plural forms; the menus include Spanish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.models import InvoiceStatus
from tests.conftest import MERCHANT2_ID, MERCHANT_ID, Harness
from tests.test_e2e_product import (
    DEFAULT,
    answer_of,
    help_commands,
    menu_seen_by,
    menus_ready,
    messages_stored,
    share_token,
    store_invoice,
    stored,
)

MERCHANT_ES_ID, CUSTOMER_ES_ID = 1003, 2004


def spanish_time(moment: datetime) -> str:
    """'3/12/2026, 9:04 UTC': day/month/year and the hour without a leading zero."""
    return f"{moment.day}/{moment.month}/{moment.year}, {moment.hour}:{moment:%M} UTC"


@pytest.fixture
async def spanish(harness: Harness) -> Harness:
    """The bot with a Spanish merchant (Lucía) and a Mexican customer (Diego)."""
    harness.emu.add_user(MERCHANT_ES_ID, "Lucía", username="lucia", language_code="es")
    harness.emu.add_user(CUSTOMER_ES_ID, "Diego", language_code="es-MX")
    await harness.start(merchant_ids=[MERCHANT_ID, MERCHANT2_ID, MERCHANT_ES_ID])
    return harness


async def test_the_menus_and_help_are_in_spanish(spanish: Harness) -> None:
    emu = spanish.emu
    lucia, diego = emu.users[MERCHANT_ES_ID], emu.users[CUSTOMER_ES_ID]
    await menus_ready(spanish)
    default = {c["command"]: c["description"] for c in emu.commands_for(DEFAULT, "es")}
    assert default == {"start": "Iniciar", "help": "Ayuda", "settings": "Idioma"}
    merchant_chat = {"type": "chat", "chat_id": MERCHANT_ES_ID}
    await emu.wait_for(lambda: bool(emu.commands_for(merchant_chat, "es")))
    mine = {c["command"]: c["description"] for c in emu.commands_for(merchant_chat, "es")}
    assert mine["invoices"] == "Tus últimas facturas"
    assert mine["invoice"] == "Crear una factura: importe [moneda] [descripción]"

    # Telegram shows Diego (es-MX) the menu of his language, "es".
    menus = ((lucia, menu_seen_by(spanish, lucia)), (diego, emu.commands_for(DEFAULT, "es")))
    for (user, menu), heading in zip(menus, ("Facturas", "Cómo pagar"), strict=True):
        reply = await spanish.command(user, "/help")
        assert heading in reply.content and "Comandos" in reply.content
        assert help_commands(reply.content) == [c["command"] for c in menu]
        for command in menu:
            assert f"/{command['command']} – {command['description']}" in reply.content
    start = await spanish.command(diego, "/start")
    assert start.content.startswith("👋 ¡Hola, Diego!")


async def test_a_spanish_merchant_and_customer_from_invoice_to_receipt(spanish: Harness) -> None:
    emu = spanish.emu
    lucia, diego = emu.users[MERCHANT_ES_ID], emu.users[CUSTOMER_ES_ID]

    refused = await spanish.command(lucia, "/invoice 12,505 Lámpara")
    assert refused.content == "Un importe puede tener como máximo 2 decimales."
    usage = await emu.wait_for_message(lucia, lambda m: m.content.startswith("Escríbelo así"))
    assert usage.content == (
        "Escríbelo así: /invoice 12,50 Café (importe, una moneda opcional como USD y una "
        "descripción opcional)."
    )
    refused = await spanish.command(lucia, "/invoice 12 " + "x" * 300)
    assert refused.content == "La descripción puede tener como máximo 200 caracteres."
    assert await spanish.services.repo.count_invoices(MERCHANT_ES_ID) == 0

    reply, invoice = await spanish.invoice(lucia, "/invoice 1234,50 Lámpara")
    assert invoice.amount_minor == 123450 and invoice.currency == "EUR"
    assert invoice.expires_at is not None
    lines = reply.content.split("\n")
    assert lines[:5] == [
        f"🧾 Factura n.º {invoice.id}",
        "Importe: 1.234,50 €",
        "«Lámpara»",
        "Estado: ⏳ pendiente de pago",
        f"Caduca: {spanish_time(invoice.expires_at)}",
    ]
    assert "Pasarela: Sandbox" in lines
    assert "🧪 Sandbox: no se mueve dinero real. Toca «Simular el pago» para pagar." in lines
    assert any(line.startswith("Para el cliente: https://t.me/") for line in lines)
    assert [b["text"] for b in reply.buttons] == [
        "💳 Pagar 1.234,50 €",
        "🧪 Simular el pago",
        "🚫 Cancelar la factura",
    ]

    shown = await spanish.command(diego, f"/start {share_token(reply)}")
    assert "Importe: 1.234,50 €" in shown.content and "Para el cliente" not in shown.content
    await messages_stored(spanish, invoice.id, 2)
    await answer_of(spanish, diego, shown, "🧪 Simular el pago")
    receipt = await emu.wait_for_message(diego, lambda m: "Recibo" in m.content)
    paid = await stored(spanish, invoice.id)
    assert paid.status is InvoiceStatus.PAID and paid.paid_at is not None
    assert receipt.content == (
        "🧾 Recibo\n1.234,50 € pagado a Lucía\n«Lámpara»\n"
        f"Pagado: {spanish_time(paid.paid_at)}\n"
        f"Pasarela: Sandbox · Referencia: {invoice.gateway_session_id}\n"
        f"Factura n.º {invoice.id}\n"
        "🧪 Prueba de sandbox: no se ha movido dinero real."
    )
    await emu.wait_for(lambda: "✅ PAGADA" in reply.content and "✅ PAGADA" in shown.content)
    assert f"Pagada: {spanish_time(paid.paid_at)}" in reply.content
    notice = await emu.wait_for_message(spanish.admin, lambda m: f"#{invoice.id}" in m.content)
    assert "€1,234.50" in notice.content  # the English admin reads it in English

    # A sandbox test is never money: /report leaves it out and only counts it.
    document = await spanish.command(lucia, "/report")
    assert document.content == "No hay facturas en ese periodo (los últimos 30 días)."
    note = await emu.wait_for_message(lucia, lambda m: m.content.startswith("🧪 1 prueba"))
    assert note.content == "🧪 1 prueba de sandbox no contada"
    now = datetime.now(UTC) - timedelta(minutes=1)
    await store_invoice(spanish, lucia.id, "1234.50", "EUR", InvoiceStatus.PAID, now)
    document = await spanish.command(lucia, "/report")
    assert document.content == "1 factura, los últimos 30 días"  # one: the singular form
    summary = await emu.wait_for_message(lucia, lambda m: m.content.startswith("📊"))
    assert summary.content == (
        "📊 los últimos 30 días: EUR ✅ PAGADA: 1 · 1.234,50 €\n🧪 1 prueba de sandbox no contada"
    )
    await store_invoice(spanish, lucia.id, "5", "USD", InvoiceStatus.PENDING, now)
    document = await spanish.command(lucia, "/report all")
    assert document.content == "2 facturas, todo el tiempo"
    summary = await emu.wait_for_message(lucia, lambda m: m.content.startswith("📊 todo"))
    assert summary.content == (
        "📊 todo el tiempo: EUR ✅ PAGADA: 1 · 1.234,50 € | USD ⏳ pendiente de pago: 1 · 5,00 $"
        "\n🧪 1 prueba de sandbox no contada"
    )

    settings = await spanish.command(lucia, "/settings")
    assert settings.content == (
        "⚙️ Ajustes\nPasarela predeterminada: Sandbox\nIdioma: automático"
    )


async def test_an_english_customer_can_choose_spanish(spanish: Harness) -> None:
    emu, customer = spanish.emu, spanish.customer
    menu = await spanish.command(customer, "/settings")
    assert "• Español" not in str(menu.buttons)
    assert await answer_of(spanish, customer, menu, "Español") == "Guardado."
    await emu.wait_for(lambda: menu.content == "⚙️ Ajustes\nIdioma: Español")
    await emu.wait_for(lambda: menu_seen_by(spanish, customer)[1]["description"] == "Ayuda")
    reply = await spanish.command(customer, "/help")
    assert "Cómo pagar" in reply.content
    refused = await spanish.command(customer, "/invoice 5")
    assert refused.content.startswith("Lo siento, aquí solo los comerciantes")

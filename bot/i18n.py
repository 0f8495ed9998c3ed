"""Message catalogues: every text the bot sends, in English and German.

Texts are HTML (parse_mode HTML); placeholders are `{name}` and are filled with values that
the views escape. `t(lang, key, **params)` falls back to English for an unknown language.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}

EN: dict[str, str] = {
    # start / help
    "start_merchant": (
        "👋 Hi {name}! I turn chats into checkouts.\n\n"
        "Create an invoice: <code>/invoice 12.50 Coffee</code>\n"
        "At the counter: <code>/pos 5</code> shows a Lightning QR.\n"
        "Your invoices: /invoices · Help: /help"
    ),
    "start_customer": (
        "👋 Hi {name}! I show invoices and tell you when they are paid.\n"
        "Open the invoice link a merchant gave you to pay it."
    ),
    # /help: the intro for the user's role, then the commands of their menu, one a line
    "help_customer": (
        "<b>How to pay</b>\n"
        "Open the invoice link you got from the merchant, then tap <b>Pay</b> "
        "or scan the QR code. I edit the invoice as soon as the payment arrives and send "
        "you a receipt."
    ),
    "help_commands": "<b>Commands</b>",
    "help_command_line": "/{command} – {description}",
    "help_merchant": (
        "<b>Invoices</b>\n"
        "<code>/invoice 12.50 Coffee</code> or <code>/invoice 12 USD Lamp</code>: an invoice "
        "with a checkout link; <code>/pos 5</code>: a Lightning QR at the counter.\n"
        "Gateways: {gateways}. Amounts: <code>12.50</code>, <code>12,50</code> or "
        "<code>12</code>, at most {maximum}.\n"
        "Inline: type <code>@{bot} 12.50 Coffee</code> in any chat to send an invoice there."
    ),
    "help_admin": (
        "<b>Merchants</b>\n"
        "<code>/merchants add ID</code> · <code>/merchants remove ID</code>, or forward me a "
        "message of the person to add."
    ),
    "cmd_start": "Start",
    "cmd_help": "Help",
    "cmd_invoice": "Create an invoice: amount [currency] [description]",
    "cmd_pos": "Lightning QR for the counter: amount [description]",
    "cmd_onchain": "On-chain payment as a QR: amount [currency] [description]",
    "cmd_invoices": "Your recent invoices",
    "cmd_report": "CSV report: today, week, month or all",
    "cmd_settings": "Default gateway and language",
    "cmd_settings_customer": "Language",
    "cmd_merchants": "Add or remove merchants",
    # refusals and input errors
    "not_merchant": (
        "Sorry, only merchants can create invoices here. "
        "If you sell with this bot, ask its admin to add you."
    ),
    "not_admin": "Sorry, only admins can do that.",
    "not_yours": "That is not your invoice.",
    "invoice_usage": (
        "Write it like this: <code>/{command} 12.50 Coffee</code> "
        "(amount, optional currency such as <code>USD</code>, optional description)."
    ),
    "err_amount_missing": "Please tell me the amount.",
    "err_amount_not_a_number": "“{text}” is not an amount I understand.",
    "err_amount_too_many_decimals": "An amount can have at most {places} decimals.",
    "err_amount_not_positive": "The amount must be greater than zero.",
    "err_amount_too_large": "The amount can be at most {maximum}.",
    "err_description_too_long": "The description can be at most {maximum} characters long.",
    "err_currency_unsupported": "{gateway} cannot take {currency}; it takes {accepted}.",
    "err_gateway_unavailable": "The gateway {gateway} is not set up here. Available: {available}.",
    "err_kind_unsupported": "{gateway} cannot do that kind of payment.",
    "err_not_pending": "This invoice is no longer open ({status}).",
    "err_cannot_simulate": "Only sandbox invoices can be paid by simulation.",
    "err_no_pos_gateway": "No gateway for Lightning payments at the counter is set up.",
    "err_no_onchain_gateway": (
        "No gateway for on-chain payments is set up (MixPay with MIXPAY_PAYMENT_ASSET_ID)."
    ),
    "gateway_failed": "⚠️ {gateway} could not create the payment: {message}",
    "gateway_busy": "⚠️ {gateway} is not answering right now. Please try again in a minute.",
    "something_wrong": "⚠️ Something went wrong on my side. Nothing was charged; please try again.",
    "storage_busy": "⚠️ I cannot save right now. Nothing was created; please try again shortly.",
    # hostile input (issue 17)
    "edited_command": (
        "✏️ I do not run edited commands again. Please send the corrected command as a new "
        "message."
    ),
    "invoice_not_shown": (
        "⚠️ Invoice #{id} was created, but I could not show it here. It is live: open it from "
        "/invoices."
    ),
    "invoice_not_found": "I cannot find that invoice. Please check the link you got.",
    # invoice view
    "invoice_title": "🧾 <b>Invoice #{id}</b>",
    "invoice_amount": "Amount: <b>{amount}</b>",
    "invoice_description": "“{description}”",
    "invoice_gateway": "Gateway: {gateway}",
    "invoice_status": "Status: {status}",
    "invoice_expires": "Expires: {time}",
    "invoice_paid_at": "Paid: {time}",
    "invoice_share": "Share with the customer: {link}",
    "status_pending": "⏳ waiting for payment",
    "status_paid": "✅ PAID",
    "status_paid_late": "✅ PAID (late, after it had expired)",
    "status_expired": "⌛ expired",
    "status_failed": "❌ failed",
    "status_cancelled": "🚫 cancelled",
    "status_underpaid": "⚠️ underpaid: {paid} of {amount} arrived",
    "status_underpaid_unknown": "⚠️ underpaid: less than {amount} arrived",
    "failure_reason": "Reason: {reason}",
    "pos_caption_lines": "⚡ Lightning: <b>{sats} sats</b>\nScan to pay · QR valid until {time}",
    "onchain_lines": "Send exactly <code>{amount} {symbol}</code> to\n<code>{address}</code>",
    "button_pay": "💳 Pay {amount}",
    "button_simulate": "🧪 Simulate payment",
    "button_cancel": "🚫 Cancel invoice",
    "button_refresh": "🔄 Check status",
    "sandbox_note": "🧪 Sandbox: no real money moves. Tap “Simulate payment” to pay.",
    "cancelled_at_gateway": "Cancelled at {gateway} too.",
    "cancelled_locally": "Cancelled here; {gateway} cannot cancel sessions, so it just expires there.",
    "simulating": "Paying at the sandbox…",
    "creating": "⏳ Creating the invoice…",
    # notifications
    "receipt": (
        "🧾 <b>Receipt</b>\n{amount} paid to {merchant}\n“{description}”\n"
        "Paid: {time}\nGateway: {gateway} · Reference: <code>{reference}</code>\n"
        "Invoice #{id}"
    ),
    "admin_paid": "💰 Invoice #{id} paid: {amount} ({gateway}) · merchant {merchant}\n“{description}”",
    "admin_late_paid": (
        "💰 Late payment: invoice #{id} was {previous} but got paid: {amount} ({gateway}) · "
        "merchant {merchant}"
    ),
    "admin_underpaid": "⚠️ Invoice #{id} underpaid ({gateway}): {detail} · merchant {merchant}",
    "admin_failed": "❌ Invoice #{id} failed at {gateway}: {reason} · merchant {merchant}",
    "merchant_underpaid": (
        "⚠️ Invoice #{id} ({amount}) was underpaid: {detail}. The customer still has to pay "
        "the rest; I keep watching it."
    ),
    "merchant_late_paid": "💰 Invoice #{id} ({amount}) was paid late, after it had {previous}.",
    "merchant_failed": "❌ Invoice #{id} ({amount}) failed at {gateway}: {reason}",
    "merchant_compliance": (
        "🛂 {gateway} blocked the payment of invoice #{id} ({amount}) for compliance reasons; "
        "missing customer details: {reason}. No new QR code is requested for it."
    ),
    "pos_compliance_blocked": (
        "🛂 Payment blocked for compliance reasons; missing customer details: {fields}"
    ),
    "checkout_amount_line": "💳 At checkout: <b>{amount}</b> (including {commission} commission)",
    "admin_gateway_setup": "⚙️ {gateway} is not fully set up: {message}",
    "admin_gateway_auth": (
        "🔑 {gateway} rejects Tillbot's credentials: {message}\n"
        "Invoices there cannot be checked until this is fixed."
    ),
    "admin_daily_summary": "📊 Daily summary for {date}:\n{lines}",
    "summary_line": "{status}: {count} · {totals}",
    "summary_empty": "No invoices.",
    "unknown_detail": "less than the amount arrived",
    # MixPay edge cases (issue 11)
    "customer_underpaid": (
        "⚠️ Invoice #{id} ({amount}): only {detail}. Please pay the rest with the same "
        "payment; it stays open."
    ),
    "admin_failed_refund": (
        "❌ Invoice #{id} failed at {gateway} ({reason}) but {received} arrived: a refund to "
        "the customer is due · merchant {merchant}"
    ),
    "merchant_failed_refund": (
        "❌ Invoice #{id} ({amount}) failed at {gateway} ({reason}) but {received} arrived: "
        "the customer must be refunded."
    ),
    "merchant_overpaid": (
        "💰 Invoice #{id} ({amount}) was overpaid by {surplus} at {gateway}. Refund of the "
        "surplus: {surplus_status}."
    ),
    "surplus_no": "none needed",
    "surplus_pending": "not yet sent",
    "surplus_sending": "being sent",
    "surplus_success": "done",
    "admin_mismatch": (
        "🚨 {gateway} reported invoice #{id} ({amount}) as paid, but its payment names payee "
        "<code>{got_payee}</code>, {got_currency} {got_amount}. It was NOT booked as paid; "
        "check it at {gateway} · merchant {merchant}"
    ),
    "onchain_memo": "⚠️ With memo <code>{memo}</code> (required, or the payment is lost)",
    "onchain_tag": "⚠️ With destination tag <code>{tag}</code> (required, or the payment is lost)",
    # lists, reports, settings
    "invoices_title": "🧾 <b>Your invoices</b> ({first}–{last} of {total})",
    "invoices_empty": "You have no invoices yet. Create one with <code>/invoice 12.50 Coffee</code>.",
    "button_prev": "◀ Newer",
    "button_next": "Older ▶",
    "report_caption": "{count} invoices, {period}",
    "report_summary": "📊 {period}: {lines}",
    "report_summary_line": "{currency} {status}: {count} · {total}",
    "report_empty": "No invoices in that period ({period}).",
    "report_usage": "Write <code>/report today</code>, <code>week</code>, <code>month</code> or <code>all</code>.",
    "period_today": "today",
    "period_week": "the last 7 days",
    "period_month": "the last 30 days",
    "period_all": "all time",
    "settings_title": (
        "⚙️ <b>Settings</b>\nDefault gateway: <b>{gateway}</b>\nLanguage: <b>{language}</b>"
    ),
    "settings_title_customer": "⚙️ <b>Settings</b>\nLanguage: <b>{language}</b>",
    "settings_auto": "automatic",
    "settings_saved": "Saved.",
    # admin: merchants
    "merchants_title": "👥 <b>Merchants</b>\n{lines}",
    "merchants_empty": "No merchants in the database yet.",
    "merchant_line": "• <code>{id}</code>{name}{source}",
    "merchant_from_settings": "(MERCHANT_IDS)",
    "merchant_added": "✅ {id} is now a merchant.",
    "merchant_exists": "{id} is already a merchant.",
    "merchant_removed": "🗑 {id} is no longer a merchant.",
    "merchant_not_found": "{id} is not a merchant in the database.",
    "merchant_in_settings": "{id} is set in MERCHANT_IDS; remove it there.",
    "merchants_usage": (
        "Write <code>/merchants add 12345</code> or <code>/merchants remove 12345</code>, "
        "or forward me a message from the person."
    ),
    "forward_add_prompt": "Add {name} (<code>{id}</code>) as a merchant?",
    "forward_hidden": "That person hides their account in forwards; ask them for their user id.",
    "forward_bot": "That message is from a bot; bots cannot be merchants.",
    "button_add_merchant": "➕ Add as merchant",
    "button_remove_merchant": "🗑 Remove {id}",
    # inline mode
    "inline_title": "Invoice {amount}",
    "inline_description": "{description} · tap to send an invoice to this chat",
    "inline_help_title": "Type an amount, e.g. 12.50 Coffee",
    "inline_error_title": "Cannot create that invoice",
    "admin_storage_lost": (
        "🚨 This bot's database was {problem} while the bot was running. What is stored now is "
        "lost at the next restart, and payments to earlier invoices are no longer reported "
        "after it. Restore the file and restart the bot."
    ),
    "storage_problem_removed": "removed",
    "storage_problem_replaced": "replaced",
}

DE: dict[str, str] = {
    "start_merchant": (
        "👋 Hallo {name}! Ich mache aus Chats eine Kasse.\n\n"
        "Rechnung erstellen: <code>/invoice 12,50 Kaffee</code>\n"
        "An der Kasse: <code>/pos 5</code> zeigt einen Lightning-QR-Code.\n"
        "Deine Rechnungen: /invoices · Hilfe: /help"
    ),
    "start_customer": (
        "👋 Hallo {name}! Ich zeige Rechnungen und sage dir, wenn sie bezahlt sind.\n"
        "Öffne den Rechnungslink, den du vom Händler bekommen hast, um zu bezahlen."
    ),
    "help_customer": (
        "<b>So bezahlst du</b>\n"
        "Öffne den Rechnungslink des Händlers und tippe auf <b>Bezahlen</b> oder scanne den "
        "QR-Code. Sobald die Zahlung ankommt, aktualisiere ich die Rechnung und schicke dir "
        "eine Quittung."
    ),
    "help_commands": "<b>Befehle</b>",
    "help_command_line": "/{command} – {description}",
    "help_merchant": (
        "<b>Rechnungen</b>\n"
        "<code>/invoice 12,50 Kaffee</code> oder <code>/invoice 12 USD Lampe</code>: eine "
        "Rechnung mit Bezahllink; <code>/pos 5</code>: ein Lightning-QR-Code an der Kasse.\n"
        "Gateways: {gateways}. Beträge: <code>12.50</code>, <code>12,50</code> oder "
        "<code>12</code>, höchstens {maximum}.\n"
        "Inline: tippe <code>@{bot} 12,50 Kaffee</code> in einem beliebigen Chat, um dort eine "
        "Rechnung zu senden."
    ),
    "help_admin": (
        "<b>Händler</b>\n"
        "<code>/merchants add ID</code> · <code>/merchants remove ID</code>, oder leite mir "
        "eine Nachricht der Person weiter, die du hinzufügen willst."
    ),
    "cmd_start": "Start",
    "cmd_help": "Hilfe",
    "cmd_invoice": "Rechnung erstellen: Betrag [Währung] [Beschreibung]",
    "cmd_pos": "Lightning-QR für die Kasse: Betrag [Beschreibung]",
    "cmd_onchain": "On-Chain-Zahlung als QR: Betrag [Währung] [Beschreibung]",
    "cmd_invoices": "Deine letzten Rechnungen",
    "cmd_report": "CSV-Bericht: today, week, month oder all",
    "cmd_settings": "Standard-Gateway und Sprache",
    "cmd_settings_customer": "Sprache",
    "cmd_merchants": "Händler hinzufügen oder entfernen",
    "not_merchant": (
        "Entschuldigung, nur Händler können hier Rechnungen erstellen. "
        "Wenn du mit diesem Bot verkaufst, bitte den Admin, dich hinzuzufügen."
    ),
    "not_admin": "Entschuldigung, das dürfen nur Admins.",
    "not_yours": "Das ist nicht deine Rechnung.",
    "invoice_usage": (
        "Schreib es so: <code>/{command} 12,50 Kaffee</code> "
        "(Betrag, optional eine Währung wie <code>USD</code>, optional eine Beschreibung)."
    ),
    "err_amount_missing": "Bitte nenne den Betrag.",
    "err_amount_not_a_number": "„{text}“ ist kein Betrag, den ich verstehe.",
    "err_amount_too_many_decimals": "Ein Betrag darf höchstens {places} Nachkommastellen haben.",
    "err_amount_not_positive": "Der Betrag muss größer als null sein.",
    "err_amount_too_large": "Der Betrag darf höchstens {maximum} sein.",
    "err_description_too_long": "Die Beschreibung darf höchstens {maximum} Zeichen lang sein.",
    "err_currency_unsupported": "{gateway} kann kein {currency} annehmen, nur {accepted}.",
    "err_gateway_unavailable": (
        "Das Gateway {gateway} ist hier nicht eingerichtet. Verfügbar: {available}."
    ),
    "err_kind_unsupported": "{gateway} kann diese Zahlungsart nicht.",
    "err_not_pending": "Diese Rechnung ist nicht mehr offen ({status}).",
    "err_cannot_simulate": "Nur Sandbox-Rechnungen können simuliert bezahlt werden.",
    "err_no_pos_gateway": "Es ist kein Gateway für Lightning-Zahlungen an der Kasse eingerichtet.",
    "err_no_onchain_gateway": (
        "Es ist kein Gateway für On-Chain-Zahlungen eingerichtet (MixPay mit "
        "MIXPAY_PAYMENT_ASSET_ID)."
    ),
    "gateway_failed": "⚠️ {gateway} konnte die Zahlung nicht anlegen: {message}",
    "gateway_busy": "⚠️ {gateway} antwortet gerade nicht. Bitte versuch es in einer Minute erneut.",
    "something_wrong": (
        "⚠️ Bei mir ist etwas schiefgegangen. Es wurde nichts berechnet; bitte versuch es erneut."
    ),
    "storage_busy": (
        "⚠️ Ich kann gerade nicht speichern. Es wurde nichts angelegt; bitte versuch es gleich "
        "noch einmal."
    ),
    "edited_command": (
        "✏️ Bearbeitete Befehle führe ich nicht erneut aus. Bitte schick den korrigierten Befehl "
        "als neue Nachricht."
    ),
    "invoice_not_shown": (
        "⚠️ Rechnung Nr. {id} wurde angelegt, aber ich konnte sie hier nicht anzeigen. Sie ist "
        "offen: du findest sie unter /invoices."
    ),
    "invoice_not_found": "Ich finde diese Rechnung nicht. Bitte prüfe den Link.",
    "invoice_title": "🧾 <b>Rechnung Nr. {id}</b>",
    "invoice_amount": "Betrag: <b>{amount}</b>",
    "invoice_description": "„{description}“",
    "invoice_gateway": "Gateway: {gateway}",
    "invoice_status": "Status: {status}",
    "invoice_expires": "Läuft ab: {time}",
    "invoice_paid_at": "Bezahlt: {time}",
    "invoice_share": "Für den Kunden: {link}",
    "status_pending": "⏳ wartet auf Zahlung",
    "status_paid": "✅ BEZAHLT",
    "status_paid_late": "✅ BEZAHLT (verspätet, nach Ablauf)",
    "status_expired": "⌛ abgelaufen",
    "status_failed": "❌ fehlgeschlagen",
    "status_cancelled": "🚫 storniert",
    "status_underpaid": "⚠️ zu wenig bezahlt: {paid} von {amount} angekommen",
    "status_underpaid_unknown": "⚠️ zu wenig bezahlt: weniger als {amount} angekommen",
    "failure_reason": "Grund: {reason}",
    "pos_caption_lines": (
        "⚡ Lightning: <b>{sats} sats</b>\nScannen zum Bezahlen · QR gültig bis {time}"
    ),
    "onchain_lines": "Sende genau <code>{amount} {symbol}</code> an\n<code>{address}</code>",
    "button_pay": "💳 {amount} bezahlen",
    "button_simulate": "🧪 Zahlung simulieren",
    "button_cancel": "🚫 Rechnung stornieren",
    "button_refresh": "🔄 Status prüfen",
    "sandbox_note": "🧪 Sandbox: Es fließt kein echtes Geld. Tippe auf „Zahlung simulieren“.",
    "cancelled_at_gateway": "Auch bei {gateway} storniert.",
    "cancelled_locally": (
        "Hier storniert; {gateway} kann Sitzungen nicht stornieren, dort läuft sie einfach ab."
    ),
    "simulating": "Bezahle in der Sandbox…",
    "creating": "⏳ Rechnung wird erstellt…",
    "receipt": (
        "🧾 <b>Quittung</b>\n{amount} bezahlt an {merchant}\n„{description}“\n"
        "Bezahlt: {time}\nGateway: {gateway} · Referenz: <code>{reference}</code>\n"
        "Rechnung Nr. {id}"
    ),
    "admin_paid": (
        "💰 Rechnung Nr. {id} bezahlt: {amount} ({gateway}) · Händler {merchant}\n„{description}“"
    ),
    "admin_late_paid": (
        "💰 Verspätete Zahlung: Rechnung Nr. {id} war {previous}, wurde aber bezahlt: {amount} "
        "({gateway}) · Händler {merchant}"
    ),
    "admin_underpaid": (
        "⚠️ Rechnung Nr. {id} zu wenig bezahlt ({gateway}): {detail} · Händler {merchant}"
    ),
    "admin_failed": "❌ Rechnung Nr. {id} fehlgeschlagen bei {gateway}: {reason} · Händler {merchant}",
    "merchant_underpaid": (
        "⚠️ Rechnung Nr. {id} ({amount}) wurde zu wenig bezahlt: {detail}. Der Kunde muss den "
        "Rest noch zahlen; ich beobachte sie weiter."
    ),
    "merchant_late_paid": "💰 Rechnung Nr. {id} ({amount}) wurde verspätet bezahlt, sie war {previous}.",
    "merchant_failed": "❌ Rechnung Nr. {id} ({amount}) ist bei {gateway} fehlgeschlagen: {reason}",
    "merchant_compliance": (
        "🛂 {gateway} hat die Zahlung der Rechnung Nr. {id} ({amount}) aus Compliance-Gründen "
        "gesperrt; fehlende Kundenangaben: {reason}. Dafür wird kein neuer QR-Code angefordert."
    ),
    "pos_compliance_blocked": (
        "🛂 Zahlung aus Compliance-Gründen gesperrt; fehlende Kundenangaben: {fields}"
    ),
    "checkout_amount_line": (
        "💳 An der Kasse: <b>{amount}</b> (einschließlich {commission} Provision)"
    ),
    "admin_gateway_setup": "⚙️ {gateway} ist nicht vollständig eingerichtet: {message}",
    "admin_gateway_auth": (
        "🔑 {gateway} lehnt Tillbots Zugangsdaten ab: {message}\n"
        "Rechnungen dort können erst geprüft werden, wenn das behoben ist."
    ),
    "admin_daily_summary": "📊 Tageszusammenfassung für {date}:\n{lines}",
    "summary_line": "{status}: {count} · {totals}",
    "summary_empty": "Keine Rechnungen.",
    "unknown_detail": "es kam weniger als der Betrag an",
    # MixPay-Sonderfälle (Issue 11)
    "customer_underpaid": (
        "⚠️ Rechnung Nr. {id} ({amount}): nur {detail}. Bitte zahle den Rest mit derselben "
        "Zahlung; sie bleibt offen."
    ),
    "admin_failed_refund": (
        "❌ Rechnung Nr. {id} fehlgeschlagen bei {gateway} ({reason}), aber {received} kam an: "
        "der Kunde muss erstattet werden · Händler {merchant}"
    ),
    "merchant_failed_refund": (
        "❌ Rechnung Nr. {id} ({amount}) ist bei {gateway} fehlgeschlagen ({reason}), aber "
        "{received} kam an: der Kunde muss erstattet werden."
    ),
    "merchant_overpaid": (
        "💰 Rechnung Nr. {id} ({amount}) wurde bei {gateway} um {surplus} überbezahlt. "
        "Erstattung des Überschusses: {surplus_status}."
    ),
    "surplus_no": "nicht nötig",
    "surplus_pending": "noch nicht gesendet",
    "surplus_sending": "wird gesendet",
    "surplus_success": "erledigt",
    "admin_mismatch": (
        "🚨 {gateway} meldet Rechnung Nr. {id} ({amount}) als bezahlt, aber die Zahlung nennt "
        "Empfänger <code>{got_payee}</code>, {got_currency} {got_amount}. Sie wurde NICHT als "
        "bezahlt gebucht; prüfe sie bei {gateway} · Händler {merchant}"
    ),
    "onchain_memo": "⚠️ Mit Memo <code>{memo}</code> (Pflicht, sonst geht die Zahlung verloren)",
    "onchain_tag": (
        "⚠️ Mit Destination-Tag <code>{tag}</code> (Pflicht, sonst geht die Zahlung verloren)"
    ),
    "invoices_title": "🧾 <b>Deine Rechnungen</b> ({first}–{last} von {total})",
    "invoices_empty": (
        "Du hast noch keine Rechnungen. Erstelle eine mit <code>/invoice 12,50 Kaffee</code>."
    ),
    "button_prev": "◀ Neuere",
    "button_next": "Ältere ▶",
    "report_caption": "{count} Rechnungen, {period}",
    "report_summary": "📊 {period}: {lines}",
    "report_summary_line": "{currency} {status}: {count} · {total}",
    "report_empty": "Keine Rechnungen in diesem Zeitraum ({period}).",
    "report_usage": (
        "Schreib <code>/report today</code>, <code>week</code>, <code>month</code> oder "
        "<code>all</code>."
    ),
    "period_today": "heute",
    "period_week": "die letzten 7 Tage",
    "period_month": "die letzten 30 Tage",
    "period_all": "gesamter Zeitraum",
    "settings_title": (
        "⚙️ <b>Einstellungen</b>\nStandard-Gateway: <b>{gateway}</b>\nSprache: <b>{language}</b>"
    ),
    "settings_title_customer": "⚙️ <b>Einstellungen</b>\nSprache: <b>{language}</b>",
    "settings_auto": "automatisch",
    "settings_saved": "Gespeichert.",
    "merchants_title": "👥 <b>Händler</b>\n{lines}",
    "merchants_empty": "Noch keine Händler in der Datenbank.",
    "merchant_line": "• <code>{id}</code>{name}{source}",
    "merchant_from_settings": "(MERCHANT_IDS)",
    "merchant_added": "✅ {id} ist jetzt Händler.",
    "merchant_exists": "{id} ist bereits Händler.",
    "merchant_removed": "🗑 {id} ist kein Händler mehr.",
    "merchant_not_found": "{id} ist kein Händler in der Datenbank.",
    "merchant_in_settings": "{id} steht in MERCHANT_IDS; entferne es dort.",
    "merchants_usage": (
        "Schreib <code>/merchants add 12345</code> oder <code>/merchants remove 12345</code> "
        "oder leite mir eine Nachricht der Person weiter."
    ),
    "forward_add_prompt": "{name} (<code>{id}</code>) als Händler hinzufügen?",
    "forward_hidden": (
        "Diese Person verbirgt ihr Konto in Weiterleitungen; frag sie nach ihrer Benutzer-ID."
    ),
    "forward_bot": "Diese Nachricht stammt von einem Bot; Bots können keine Händler sein.",
    "button_add_merchant": "➕ Als Händler hinzufügen",
    "button_remove_merchant": "🗑 {id} entfernen",
    "inline_title": "Rechnung über {amount}",
    "inline_description": "{description} · tippen, um eine Rechnung in diesen Chat zu senden",
    "inline_help_title": "Gib einen Betrag ein, z. B. 12,50 Kaffee",
    "inline_error_title": "Diese Rechnung geht nicht",
    "admin_storage_lost": (
        "🚨 Die Datenbank dieses Bots wurde während des Betriebs {problem}. Was jetzt gespeichert "
        "wird, geht beim nächsten Neustart verloren, und Zahlungen früherer Rechnungen werden "
        "danach nicht mehr gemeldet. Stelle die Datei wieder her und starte den Bot neu."
    ),
    "storage_problem_removed": "entfernt",
    "storage_problem_replaced": "ersetzt",
}

CATALOGUES: Mapping[str, Mapping[str, str]] = {"en": EN, "de": DE}


def resolve_language(preferred: str | None, telegram_code: str | None) -> str:
    """The user's chosen language, else their Telegram language, else English."""
    for code in (preferred, telegram_code):
        if code:
            short = code.split("-")[0].lower()
            if short in CATALOGUES:
                return short
    return DEFAULT_LANGUAGE


def t(language: str, key: str, /, **params: object) -> str:
    catalogue = CATALOGUES.get(language, EN)
    template = catalogue.get(key) or EN[key]
    return template.format(**params) if params else template

"""The shop's staff: /staff (list with buttons), /staff invite cashier|manager (a one-time
link), /staff role <@name|id> cashier|manager, /staff remove <@name|id>, joining by
opening an invite link (`/start join_<token>`), and /staff leave (a member quits)."""

from __future__ import annotations

import logging
import re
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.staff import INVITE_TTL, JOIN_PREFIX, Action, Role, ShopMember, role_named
from bot.i18n import t
from bot.ids import parse_user_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    guard,
    language,
    reply,
    reply_input_error,
    show_in_place,
)
from bot.telegram.handlers.menu import refresh_menu

log = logging.getLogger(__name__)

CALLBACK_STAFF = "stf"  # stf:role:<user id>:<cashier|manager>, stf:rm:<user id>
_USERNAME_RE = re.compile(r"^@[a-z0-9_]{4,32}$")
MAX_LISTED = 40


async def staff_command(update: Update, context: TillbotContext) -> None:
    """/staff [invite <role> | role <who> <role> | remove <who>] (the owner only), or
    /staff leave (a cashier or manager)."""
    user = update.effective_user
    args = [a.lower() for a in (context.args or [])]
    if user is not None and args == ["leave"]:
        await _leave(update, context)
        return
    if user is None or await guard(update, context, Action.MANAGE_STAFF, "staff") is None:
        return
    if not args:
        await _show_list(update, context)
        return
    action = args[0]
    if action == "invite" and len(args) == 2:
        await _invite(update, context, args[1])
        return
    if action in ("role", "remove") and len(args) == (3 if action == "role" else 2):
        member = await _person(context, args[1])
        if member is None:
            await reply(update, context, "staff_unknown_person", who=escape(args[1][:40]))
            return
        role = role_named(args[2]) if action == "role" else None
        if action == "role" and role is None:
            await reply(update, context, "staff_usage")
            return
        await _change(update, context, member, role)
        return
    await reply(update, context, "staff_usage")


async def _person(context: TillbotContext, who: str) -> int | None:
    """A user id, or the user last seen with that @username."""
    if (user_id := parse_user_id(who)) is not None:
        return user_id
    if _USERNAME_RE.match(who):
        return await context.services.payments.access.user_by_username(who)
    return None


async def _invite(update: Update, context: TillbotContext, word: str) -> None:
    user = update.effective_user
    assert user is not None
    role = role_named(word)
    if role is None:
        await reply(update, context, "staff_invite_usage", role=escape(word[:32]))
        return
    token, _ = await context.services.payments.staff.invite(user.id, role)
    lang = await language(update, context)
    link = f"https://t.me/{context.services.view.bot_username}?start={JOIN_PREFIX}{token}"
    hours = int(INVITE_TTL.total_seconds() // 3600)
    await reply(
        update,
        context,
        "staff_invite_link",
        role=t(lang, f"role_{role.value}"),
        link=link,
        count=hours,
    )


async def _name(context: TillbotContext, user_id: int) -> str:
    name = (await context.services.prefs(user_id)).name
    return escape(name) if name else str(user_id)


async def _show_list(update: Update, context: TillbotContext) -> None:
    user = update.effective_user
    assert user is not None
    lang = await language(update, context)
    _, members = await context.services.payments.staff.members(user.id)
    lines = []
    rows: list[list[InlineKeyboardButton]] = []
    for member in list(members)[:MAX_LISTED]:
        name = await _name(context, member.user_id)
        role = t(lang, f"role_{member.role.value}")
        lines.append(t(lang, "staff_line", name=name, id=member.user_id, role=role))
        if member.role is not Role.OWNER:
            rows.append(_buttons(member, lang, name))
    text = t(lang, "staff_title", lines="\n".join(lines))
    if len(lines) == 1:
        text += "\n" + t(lang, "staff_alone")
    text += "\n\n" + t(lang, "staff_usage")
    await show_in_place(update, context, text, InlineKeyboardMarkup(rows) if rows else None)


def _buttons(member: ShopMember, lang: str, name: str) -> list[InlineKeyboardButton]:
    other = Role.MANAGER if member.role is Role.CASHIER else Role.CASHIER
    return [
        InlineKeyboardButton(
            t(lang, f"button_make_{other.value}", name=name)[:64],
            callback_data=f"{CALLBACK_STAFF}:role:{member.user_id}:{other.value}",
        ),
        InlineKeyboardButton(
            t(lang, "button_remove_member", name=name)[:64],
            callback_data=f"{CALLBACK_STAFF}:rm:{member.user_id}",
        ),
    ]


async def staff_button(update: Update, context: TillbotContext) -> None:
    """`stf:role:<id>:<role>` and `stf:rm:<id>`: the owner's buttons, checked on every press."""
    query = update.callback_query
    data = query.data if query is not None and isinstance(query.data, str) else ""
    parts = callback_parts(update, CALLBACK_STAFF, 3 if data.startswith("stf:role:") else 2)
    member = parse_user_id(parts[1]) if parts is not None else None
    role = role_named(parts[2]) if parts is not None and parts[0] == "role" else None
    valid = parts is not None and (parts[0] == "rm" or (parts[0] == "role" and role is not None))
    if not valid or member is None:
        await answer(update)
        return
    user = update.effective_user
    lang = await language(update, context)
    seat = None if user is None else await context.services.payments.access.seat(user.id)
    if seat is None or not seat.may(Action.MANAGE_STAFF):
        await answer(update, t(lang, "staff_owner_only"), alert=True)
        return
    await _change(update, context, member, role)


async def _change(
    update: Update, context: TillbotContext, member_id: int, role: Role | None
) -> None:
    """Give `member_id` the role (None: remove them), tell them, and show the list again."""
    user = update.effective_user
    assert user is not None
    staff = context.services.payments.staff
    try:
        if role is None:
            await staff.remove(user.id, member_id)
        else:
            await staff.set_role(user.id, member_id, role)
    except InputError as exc:
        if update.callback_query is not None:
            lang = await language(update, context)
            await answer(update, t(lang, f"err_{exc.code}", **exc.params), alert=True)
        else:
            await reply_input_error(update, context, exc)
        return
    except NotAllowed:
        await reply(update, context, "staff_owner_only")
        return
    await answer(update)
    context.services.forget_prefs(member_id)
    await refresh_menu(context.bot, context.services, member_id)
    await _tell_member(context, member_id, role, await _name(context, user.id))
    await _show_list(update, context)


async def _leave(update: Update, context: TillbotContext) -> None:
    """/staff leave: the member stops working for the shop; the owner is told."""
    user = update.effective_user
    assert user is not None
    services = context.services
    try:
        shop_id = await services.payments.staff.leave(user.id)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    services.forget_prefs(user.id)
    await reply(update, context, "staff_left", owner=await _name(context, shop_id))
    await refresh_menu(context.bot, services, user.id)
    owner_lang = await services.language_of_chat(shop_id)
    note = t(owner_lang, "staff_left_owner", name=escape(user.full_name), id=user.id)
    try:
        await context.bot.send_message(shop_id, note, parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.info("could not tell the owner of shop %s that a member left: %s", shop_id, exc)


async def _tell_member(
    context: TillbotContext, member_id: int, role: Role | None, owner_name: str
) -> None:
    lang = await context.services.language_of_chat(member_id)
    if role is None:
        text = t(lang, "staff_you_were_removed", owner=owner_name)
    else:
        text = t(lang, "staff_your_role", role=t(lang, f"role_{role.value}"), owner=owner_name)
        text += "\n" + t(lang, f"staff_can_{role.value}")
    try:
        await context.bot.send_message(member_id, text, parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.info("could not tell user %s about their seat: %s", member_id, exc)


async def join(update: Update, context: TillbotContext, token: str) -> None:
    """`/start join_<token>`: join the shop in the invite's role; tell them what they can
    do, and tell the owner. Any refusal changes nothing."""
    user = update.effective_user
    if user is None:
        return
    services = context.services
    try:
        joined = await services.payments.staff.join(user.id, token)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    services.forget_prefs(user.id)
    lang = await language(update, context)
    owner = await _name(context, joined.shop_id)
    role = t(lang, f"role_{joined.role.value}")
    text = t(lang, "staff_joined", role=role, owner=owner)
    text += "\n" + t(lang, f"staff_can_{joined.role.value}")
    if update.effective_chat is not None:
        await context.bot.send_message(update.effective_chat.id, text, parse_mode=ParseMode.HTML)
    await refresh_menu(context.bot, services, user.id)
    owner_lang = await services.language_of_chat(joined.invited_by)
    note = t(
        owner_lang,
        "staff_joined_owner",
        name=escape(user.full_name),
        id=user.id,
        role=t(owner_lang, f"role_{joined.role.value}"),
    )
    try:
        await context.bot.send_message(joined.invited_by, note, parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.info("could not tell the owner of shop %s about a new member: %s", joined.shop_id, exc)

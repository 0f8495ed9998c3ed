"""Bot API methods of the emulator that send, edit and delete messages."""

from __future__ import annotations

from typing import Any

from testkit.telegram.checks import ApiChecks
from testkit.telegram.models import (
    ApiError,
    MessageRecord,
)
from testkit.telegram.spec import UploadedFile
from testkit.telegram.state import canonical_json, unix_now

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


def _same_markup(new: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    """Equal as message reply markup: only a non-empty inline keyboard counts."""

    def norm(markup: dict[str, Any] | None) -> str:
        rows = (markup or {}).get("inline_keyboard")
        return canonical_json(rows) if rows and any(rows) else "null"

    return norm(new) == norm(old)


class MessageMethods(ApiChecks):
    """The Bot API methods that send, edit and delete messages."""

    async def _send_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        self._check_can_write(chat)
        text, entities = self._parse_text(
            params.get("text", ""), params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat, params)
        rec = self._new_message(chat.id, from_bot=True, from_user_id=None)
        rec.text, rec.entities = text, entities
        rec.html, rec.parse_mode = str(params.get("text", "")), params.get("parse_mode")
        rec.reply_markup = markup
        rec.reply_to_message_id = reply_to
        return self._message_api(rec)

    async def _send_media(
        self, params: dict[str, Any], files: dict[str, UploadedFile], kind: str
    ) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        self._check_can_write(chat)
        caption_raw = params.get("caption")
        caption: str | None = None
        caption_entities: list[dict[str, Any]] = []
        if caption_raw is not None:
            caption, caption_entities = self._parse_text(
                caption_raw, params.get("parse_mode"), params.get("caption_entities"), caption=True
            )
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat, params)
        stored = self._resolve_file(params.get(kind), files, kind)
        rec = self._new_message(chat.id, from_bot=True, from_user_id=None)
        if kind == "photo":
            rec.photo_file = stored
        else:
            rec.document_file = stored
        if caption_raw is not None:
            rec.caption, rec.caption_entities = caption or None, caption_entities
            rec.caption_html = str(caption_raw)
            rec.parse_mode = params.get("parse_mode")
        rec.reply_markup = markup
        rec.reply_to_message_id = reply_to
        return self._message_api(rec)

    async def _send_photo(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return await self._send_media(params, files, "photo")

    async def _send_document(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return await self._send_media(params, files, "document")

    async def _edit_message_text(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        if params.get("text") is None:
            raise ApiError(
                400, "Bad Request: message text is empty", violation="editMessageText without text"
            )
        text, entities = self._parse_text(
            params["text"], params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if text == rec.text and entities == rec.entities and _same_markup(markup, rec.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.text, rec.entities = text, entities
        rec.html, rec.parse_mode = str(params["text"]), params.get("parse_mode")
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    def _apply_edit_after(self, rec: MessageRecord, inline: bool) -> Any:
        # the snapshot of the previous content is taken by the caller before changing it
        rec.edits += 1
        rec.edit_date = unix_now()
        if not inline:
            return self._message_api(rec)
        return True

    def _parse_caption(
        self, raw: Any, parse_mode: Any, entities: Any
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """A caption as Telegram stores it: no caption at all when none was given."""
        if raw is None:
            return None, []
        return self._parse_text(raw, parse_mode, entities, caption=True)

    async def _edit_message_caption(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        raw = params.get("caption")
        caption, entities = self._parse_caption(
            raw, params.get("parse_mode"), params.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.photo_file is None and rec.document_file is None:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        new_caption = caption or None
        if (
            new_caption == rec.caption
            and entities == rec.caption_entities
            and _same_markup(markup, rec.reply_markup)
        ):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.caption, rec.caption_entities = new_caption, entities
        rec.caption_html = None if raw is None else str(raw)
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _edit_message_media(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        media = params.get("media")
        if not isinstance(media, dict):
            raise ApiError(
                400,
                "Bad Request: can't parse InputMedia JSON object",
                violation="media is not an object",
            )
        mtype = media.get("type")
        if mtype not in ("photo", "document"):
            raise ApiError(
                400,
                f"Bad Request: unsupported media type {mtype!r} in the emulator",
                violation=f"editMessageMedia with media type {mtype!r} (emulated: photo, document)",
            )
        raw_caption = media.get("caption")
        caption, entities = self._parse_caption(
            raw_caption, media.get("parse_mode"), media.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.photo_file is None and rec.document_file is None:
            raise ApiError(400, "Bad Request: there is no media in the message to edit")
        media_ref = media.get("media")
        current = rec.photo_file if mtype == "photo" else rec.document_file
        if (
            isinstance(media_ref, str)
            and current is not None
            and media_ref == current.file_id
            and (caption or None) == rec.caption
            and _same_markup(markup, rec.reply_markup)
        ):
            raise ApiError(400, NOT_MODIFIED)
        stored = self._resolve_file(media_ref, files, str(mtype))
        rec.edit_history.append(rec.snapshot())
        if mtype == "photo":
            rec.photo_file, rec.document_file = stored, None
        else:
            rec.photo_file, rec.document_file = None, stored
        rec.caption, rec.caption_entities = caption or None, entities
        rec.caption_html = None if raw_caption is None else str(raw_caption)
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _edit_message_reply_markup(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if _same_markup(markup, rec.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _delete_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        mid = params["message_id"]
        rec = self._message_index.get((chat.id, mid)) if isinstance(mid, int) else None
        if rec is None or rec.deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        if not chat.is_private and not rec.from_bot:
            raise ApiError(400, "Bad Request: message can't be deleted")
        rec.deleted = True
        return True

    async def _delete_messages(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        ids = params.get("message_ids") or []
        if not 1 <= len(ids) <= 100:
            raise ApiError(
                400, "Bad Request: too many messages to delete", violation="1-100 message_ids"
            )
        for mid in ids:
            rec = self._message_index.get((chat.id, mid)) if isinstance(mid, int) else None
            if rec is not None:
                rec.deleted = True
        return True

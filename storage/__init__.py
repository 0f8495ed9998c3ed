"""Tillbot storage: `await open_repository(settings.database_url)`.

URLs:
    sqlite:///relative/path.db      a file relative to the working directory
    sqlite:////absolute/path.db     an absolute path
    sqlite:////path.db?mode=ro      SQLite URI parameters after "?" (mode=ro: read-only)
    postgresql://user:password@host:5432/dbname   (or postgres://; asyncpg DSN options)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote

from storage.base import Repository, StorageError

__all__ = ["Repository", "StorageError", "open_repository", "parse_sqlite_url"]

_SQLITE_FORMS = "sqlite:///relative.db or sqlite:////absolute/path.db"


def parse_sqlite_url(url: str) -> tuple[Path, str]:
    """The file path and the SQLite URI query ("" when none) of a sqlite:/// URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        raise StorageError(f"not a sqlite URL; expected {_SQLITE_FORMS}")
    if not rest.startswith("/"):  # sqlite://host/... : SQLite has no host
        raise StorageError(f"bad sqlite URL {url!r}; expected {_SQLITE_FORMS}")
    location, _, query = rest[1:].partition("?")
    path = unquote(location)
    if not path:
        raise StorageError(f"bad sqlite URL {url!r}: no file; expected {_SQLITE_FORMS}")
    return Path(path), query


async def open_repository(database_url: str, *, max_connections: int = 10) -> Repository:
    """Connect to the database the URL names, apply pending migrations, return the repository.

    `max_connections` bounds a server database's connection pool (SQLite has one).

    Raises StorageError (never showing the URL's password) when the database cannot be
    opened or migrated: unreachable server, bad credentials, locked or read-only file.
    """
    scheme = database_url.partition("://")[0].lower()
    repo: Repository
    if scheme == "sqlite":
        from storage.sqlite import SqliteRepository

        path, query = parse_sqlite_url(database_url)
        read_only = dict(parse_qsl(query)).get("mode") == "ro"
        if not read_only and str(path) != ":memory:" and not path.parent.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"sqlite database {path}: {exc}") from exc
        repo = await SqliteRepository.open(path, uri_query=query)
    elif scheme in {"postgresql", "postgres"}:
        from storage.postgres import PostgresRepository

        repo = await PostgresRepository.open(database_url, max_size=max_connections)
    else:
        raise StorageError(
            f"unsupported database URL scheme {scheme!r}: use {_SQLITE_FORMS}"
            " or postgresql://user:password@host:port/dbname"
        )
    try:
        await repo.migrate()
    except BaseException:
        await repo.close()
        raise
    return repo

"""An anonymous visitor's identity across refreshes, tabs and restarts: a signed browser token.

In shared mode a visitor who has not logged in is known by a random id. The server keeps it
in the browser as a cookie `<id>.<signature>`, the signature an HMAC-SHA256 of the id under
this server's secret, so a browser can keep its own id but cannot make up another's: a
token whose signature does not match (forged, edited, from another server) is ignored and
its browser gets a new id. The secret is `identity_secret` in the [studio] section of
.streamlit/secrets.toml or, when that is absent, one made at the first start and kept in the
run store (`.identity_secret`, mode 0600), so a restart keeps every visitor's id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from fmnist_core.base.errors import UserError
from fmnist_core.formats.run_files import FileProblem, read_regular_text

COOKIE_NAME = "fmnist_visitor"
COOKIE_MAX_AGE_S = 365 * 24 * 3600  # a year after the visitor's last visit (each visit sets it again)
ANONYMOUS_PREFIX = "anon:"  # an anonymous visitor's access.Visitor.id is "anon:<id>"
SECRET_SETTING = "identity_secret"  # its key in secrets.toml's [studio] section
SECRET_FILE = ".identity_secret"  # in the run store, when secrets.toml has none
MIN_SECRET_CHARS = 32
_ID = re.compile(r"[0-9a-f]{32}")  # what new_visitor_id makes: 128 random bits
_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{64})")  # id . HMAC-SHA256 in hex


def new_visitor_id() -> str:
    return ANONYMOUS_PREFIX + secrets.token_hex(16)


def _signature(secret: bytes, raw_id: str) -> str:
    return hmac.new(secret, f"fmnist-visitor:{raw_id}".encode(), hashlib.sha256).hexdigest()


def token_for(secret: bytes, visitor_id: str) -> str | None:
    """The cookie value that proves `visitor_id` (one new_visitor_id made); None for any other id."""
    raw_id = visitor_id.removeprefix(ANONYMOUS_PREFIX)
    if not visitor_id.startswith(ANONYMOUS_PREFIX) or not _ID.fullmatch(raw_id):
        return None
    return f"{raw_id}.{_signature(secret, raw_id)}"


def visitor_from_token(secret: bytes, token: object) -> str | None:
    """The visitor id a cookie value proves, or None when it proves nothing: missing, not a
    string, malformed, or signed with another secret."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        return None
    raw_id, signature = match.groups()
    # compare_digest: the time taken does not tell a forger how much of a signature was right.
    return ANONYMOUS_PREFIX + raw_id if hmac.compare_digest(signature, _signature(secret, raw_id)) else None


def load_secret(configured: object, runs_dir: Path) -> bytes:
    """This server's signing secret: `configured` ([studio] identity_secret) when given, else
    the one kept in <runs_dir>/.identity_secret, made there on the first call. UserError, in
    one line saying what to do, when either is unusable."""
    if configured is not None:
        if not isinstance(configured, str) or len(configured.strip()) < MIN_SECRET_CHARS:
            raise UserError(f"[studio] {SECRET_SETTING} must be a string of at least {MIN_SECRET_CHARS} characters, "
                            "e.g. what `python -c 'import secrets; print(secrets.token_hex(32))'` prints")
        return configured.strip().encode()
    path = Path(runs_dir) / SECRET_FILE
    if not os.path.lexists(path):
        try:
            _create_secret_file(path)
        except OSError as e:  # e.g. a read-only run store
            raise UserError(f"cannot keep an identity secret in {path.parent} ({e.strerror}): "
                            f"make it writable, or set {SECRET_SETTING} in the [studio] section of secrets.toml") from e
    fix = "delete it and restart the server (anonymous visitors then get new identities)"
    try:
        text = read_regular_text(path, limit=1024)  # never a symlink, a FIFO or a giant
    except FileProblem as e:
        raise UserError(f"{e} (in {path.parent}): {fix}") from e
    if text is None or len(text.strip()) < MIN_SECRET_CHARS:
        raise UserError(f"{SECRET_FILE} in {path.parent} is not a secret this Studio wrote: {fix}")
    return text.strip().encode()


def _create_secret_file(path: Path) -> None:
    """Write a new secret readable by this user only. Written to a temporary file, then linked
    into place: link never replaces a file, so two servers starting at once agree on one
    secret, and nobody ever reads half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{SECRET_FILE}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(temp, path)
    except FileExistsError:
        pass  # another server made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)

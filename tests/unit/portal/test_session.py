"""The session cookie: what it holds, that nobody can read or forge it, that it ends."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from bazaar.portal.session import (
    MAX_COOKIE_VALUE,
    Session,
    SessionCodec,
    cookie_header,
    fernet_key,
    load_session_key,
)
from bazaar.portal.settings import PortalSettings


def signed_in_session() -> Session:
    session = Session.new()
    session.sign_in(
        access_token="header." + "p" * 900 + ".signature",
        refresh_token="r" * 43,
        expires_at=time.time() + 900,
        user_id=str(uuid.uuid4()),
        email="ada@bazaar.example.com",
        display_name="Ada",
        roles=["seller", "customer"],
    )
    return session


def test_a_session_comes_back_as_it_went_out() -> None:
    codec = SessionCodec(Fernet.generate_key(), 3600)
    session = signed_in_session()
    item = str(uuid.uuid4())
    session.basket[item] = 3
    session.flash("Saved.", "success")
    restored = codec.decode(codec.encode(session))
    assert restored is not None
    assert restored.access_token == session.access_token
    assert restored.refresh_token == session.refresh_token
    assert restored.roles == ["customer", "seller"]
    assert restored.basket == {item: 3}
    assert restored.flashes == [("success", "Saved.")]
    assert restored.csrf_token == session.csrf_token
    assert not restored.dirty


def test_the_cookie_value_reveals_nothing() -> None:
    codec = SessionCodec(Fernet.generate_key(), 3600)
    session = signed_in_session()
    value = codec.encode(session)
    assert "ada@" not in value and "ppp" not in value and session.csrf_token not in value


def test_a_forged_or_damaged_cookie_is_no_session() -> None:
    codec = SessionCodec(Fernet.generate_key(), 3600)
    value = codec.encode(signed_in_session())
    assert codec.decode(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert codec.decode("not-a-cookie") is None
    other = SessionCodec(Fernet.generate_key(), 3600)
    assert other.decode(value) is None


def test_an_idle_session_expires() -> None:
    codec = SessionCodec(Fernet.generate_key(), 60)
    value = codec.encode(signed_in_session())
    assert codec.decode(value, now=time.time() + 30) is not None
    assert codec.decode(value, now=time.time() + 61) is None


def test_signing_out_forgets_the_user_and_changes_the_csrf_token() -> None:
    session = signed_in_session()
    session.basket[str(uuid.uuid4())] = 1
    before = session.csrf_token
    session.sign_out()
    assert not session.signed_in and session.basket == {} and session.roles == []
    assert session.csrf_token != before


def test_a_full_basket_still_fits_in_one_cookie() -> None:
    codec = SessionCodec(Fernet.generate_key(), 3600)
    session = signed_in_session()
    for _ in range(PortalSettings().basket_max_lines):
        session.basket[str(uuid.uuid4())] = 1000
    assert codec.fits(session), len(codec.encode(session))
    assert len(codec.encode(session)) <= MAX_COOKIE_VALUE


def test_cookie_attributes() -> None:
    plain = cookie_header("s", "v", max_age=60, secure=False)
    assert plain == "s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    assert cookie_header("s", "v", max_age=60, secure=True).endswith("; Secure")


def test_any_secret_becomes_a_fernet_key_and_a_fernet_key_stays_itself() -> None:
    key = Fernet.generate_key()
    assert fernet_key(key.decode()) == key
    derived = fernet_key("a passphrase")
    Fernet(derived)
    assert derived == fernet_key("a passphrase")


def test_the_secret_is_generated_once_and_then_reused(tmp_path: Path) -> None:
    settings = PortalSettings(data_dir=tmp_path / "portal")
    first = load_session_key(settings)
    assert load_session_key(settings) == first
    assert (tmp_path / "portal" / "session-secret").stat().st_mode & 0o777 == 0o600
    configured = PortalSettings(data_dir=tmp_path, session_secret=SecretStr("configured"))
    assert load_session_key(configured) == fernet_key("configured")

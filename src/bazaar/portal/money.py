"""Money as people read and type it, from and to the API's integer minor units."""

from __future__ import annotations

import re

# ISO 4217 currencies without minor units; the rest have two (three-decimal ones are rare
# enough to be listed here too).
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
# What the portal offers when a seller picks a currency.
CURRENCIES = ("USD", "EUR", "GBP", "JPY")
_AMOUNT = re.compile(r"^\d{1,13}(?:[.,]\d+)?$")


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def format_money(amount: int | None, currency: str) -> str:
    """``1250, "USD"`` -> ``$12.50``; unknown currencies get their code after the number."""
    if amount is None:
        return "—"
    digits = exponent(currency)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**digits) if digits else (abs(amount), 0)
    number = f"{units:,}" + (f".{minor:0{digits}d}" if digits else "")
    symbol = _SYMBOLS.get(currency.upper())
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {currency.upper()}"


def format_plain(amount: int | None, currency: str) -> str:
    """An amount as an input field shows it (``12.50``), without symbol or separators."""
    if amount is None:
        return ""
    digits = exponent(currency)
    if not digits:
        return str(amount)
    units, minor = divmod(amount, 10**digits)
    return f"{units}.{minor:0{digits}d}"


def parse_money(text: str, currency: str) -> int:
    """``"12.50"`` (or ``12,5``) in ``currency`` -> ``1250``; ValueError with a sentence
    a person understands."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    for symbol in _SYMBOLS.values():
        cleaned = cleaned.removeprefix(symbol)
    if not cleaned:
        raise ValueError("Enter an amount.")
    if not _AMOUNT.match(cleaned):
        raise ValueError("Enter an amount like 12.50.")
    whole, _, fraction = cleaned.replace(",", ".").partition(".")
    digits = exponent(currency)
    if len(fraction) > digits:
        if digits == 0:
            raise ValueError(f"{currency} amounts have no decimals.")
        raise ValueError(f"Use at most {digits} decimals.")
    minor: int = int(whole) * 10**digits + (int(fraction.ljust(digits, "0")) if digits else 0)
    if minor <= 0:
        raise ValueError("The amount must be more than zero.")
    return minor

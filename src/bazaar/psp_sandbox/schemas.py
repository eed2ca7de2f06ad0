"""The sandbox's HTTP API, shaped like a card provider's (``/v1``, JSON, minor units)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bazaar.psp_sandbox.ledger import ChargeState, RefundMade, TokenIssued

_CARD_NUMBER = re.compile(r"^[0-9]{12,19}$")
_CVC = re.compile(r"^[0-9]{3,4}$")

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenCreate(_Request):
    """A card to tokenise; the number and CVC are secrets (never echoed, stored or logged)."""

    card_number: SecretStr = Field(
        description="12-19 digits; spaces and hyphens between groups are ignored",
        examples=["4242 4242 4242 4242"],
    )
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2100, description="Four digits")
    cvc: SecretStr = Field(description="3 or 4 digits")

    @field_validator("card_number", mode="before")
    @classmethod
    def _card_number_digits(cls, value: object) -> object:
        if isinstance(value, str):
            value = re.sub(r"[ -]", "", value)
            if not _CARD_NUMBER.match(value):
                raise ValueError("must be 12 to 19 digits")
        return value

    @field_validator("cvc", mode="before")
    @classmethod
    def _cvc_digits(cls, value: object) -> object:
        if isinstance(value, str) and not _CVC.match(value):
            raise ValueError("must be 3 or 4 digits")
        return value


class TokenRead(BaseModel):
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime

    @classmethod
    def of(cls, token: TokenIssued) -> TokenRead:
        return cls(
            token=token.token,
            brand=token.brand,
            last4=token.last4,
            exp_month=token.exp_month,
            exp_year=token.exp_year,
            created_at=token.created_at,
        )


class ChargeCreate(_Request):
    amount: int = Field(ge=1, le=99_999_999, description="Minor units (1250 = 12.50)")
    currency: Currency
    token: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=1000)
    metadata: dict[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=500)]] = (
        Field(default_factory=dict, max_length=50)
    )


class CardRead(BaseModel):
    brand: str
    last4: str


class ChargeRead(BaseModel):
    id: str
    amount: int
    currency: str
    status: Literal["succeeded", "failed"]
    failure_code: str | None
    failure_message: str | None
    idempotency_key: str
    refunded_amount: int
    refunded: bool = Field(description="True once the whole amount has been refunded")
    description: str | None
    metadata: dict[str, str]
    card: CardRead
    created_at: datetime

    @classmethod
    def of(cls, state: ChargeState) -> ChargeRead:
        charge = state.charge
        return cls(
            id=charge.id,
            amount=charge.amount,
            currency=charge.currency,
            status=charge.status,
            failure_code=charge.failure_code,
            failure_message=charge.failure_message,
            idempotency_key=charge.idempotency_key,
            refunded_amount=state.refunded_amount,
            refunded=charge.status == "succeeded" and state.refunded_amount == charge.amount,
            description=charge.description,
            metadata=charge.metadata,
            card=CardRead(brand=charge.brand, last4=charge.last4),
            created_at=charge.created_at,
        )


class ChargeList(BaseModel):
    items: list[ChargeRead]


class ChargeDeclined(BaseModel):
    """The 402 answer: a problem document that carries the failed charge."""

    type: str
    title: str
    status: Literal[402]
    detail: str
    code: str = Field(examples=["card_declined", "insufficient_funds", "expired_card"])
    charge: ChargeRead


class RefundCreate(_Request):
    amount: int | None = Field(
        default=None, ge=1, description="Minor units; absent: all that is left of the charge"
    )


class RefundRead(BaseModel):
    id: str
    charge_id: str
    amount: int
    currency: str
    status: Literal["succeeded"]
    idempotency_key: str
    created_at: datetime

    @classmethod
    def of(cls, refund: RefundMade) -> RefundRead:
        return cls(
            id=refund.id,
            charge_id=refund.charge_id,
            amount=refund.amount,
            currency=refund.currency,
            status="succeeded",
            idempotency_key=refund.idempotency_key,
            created_at=refund.created_at,
        )


class RefundList(BaseModel):
    items: list[RefundRead]

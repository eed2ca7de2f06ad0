"""The payments service's HTTP shapes (API.md, "Payments")."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

# The largest charge the provider accepts (minor units).
MAX_AMOUNT = 99_999_999

_CARD_NUMBER = re.compile(r"^[0-9]{12,19}$")
_CVC = re.compile(r"^[0-9]{3,4}$")

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Amount = Annotated[
    int,
    Field(strict=True, gt=0, le=MAX_AMOUNT, description="Minor units (1250 = 12.50)"),
]
ReferenceType = Literal["order", "auction"]
PaymentStatusName = Literal["pending", "processing", "succeeded", "failed", "refunded"]


class PaymentMethodCreate(BaseModel):
    """A card to keep. The number and CVC go to the provider for a token and nowhere else:
    they are secrets here (never echoed, stored or logged)."""

    model_config = ConfigDict(extra="forbid")

    card_number: SecretStr = Field(
        description="12-19 digits; spaces and hyphens between groups are ignored",
        examples=["4242 4242 4242 4242"],
    )
    exp_month: Annotated[int, Field(strict=True, ge=1, le=12)]
    exp_year: Annotated[int, Field(strict=True, ge=2000, le=2100, description="Four digits")]
    cvc: SecretStr = Field(description="3 or 4 digits")

    @field_validator("card_number", mode="before")
    @classmethod
    def _card_number_digits(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("must be a string of digits")
        digits = re.sub(r"[ -]", "", value)
        if not _CARD_NUMBER.match(digits):
            raise ValueError("must be 12 to 19 digits")
        return digits

    @field_validator("cvc", mode="before")
    @classmethod
    def _cvc_digits(cls, value: object) -> object:
        if not isinstance(value, str) or not _CVC.match(value):
            raise ValueError("must be 3 or 4 digits")
        return value


class PaymentMethodRead(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime


class PaymentMethodDetail(PaymentMethodRead):
    """One method by id: also whose it is (services check a buyer's method with it)."""

    user_id: uuid.UUID


class PaymentMethodPage(BaseModel):
    items: list[PaymentMethodRead]
    next_cursor: str | None


class PaymentCreate(BaseModel):
    """Carry out a payment: charge ``amount`` to the method's owner, for a reference."""

    model_config = ConfigDict(extra="forbid")

    amount: Amount
    currency: Currency
    payment_method_id: uuid.UUID
    reference_type: ReferenceType
    reference_id: uuid.UUID


class PaymentCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "cancel_requested"


class PaymentRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    amount: int
    currency: str
    status: PaymentStatusName
    failure_code: str | None
    reference_type: ReferenceType
    reference_id: uuid.UUID
    refunded_amount: int
    created_at: datetime
    updated_at: datetime


class PaymentPage(BaseModel):
    items: list[PaymentRead]
    next_cursor: str | None

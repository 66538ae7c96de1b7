"""The strict base model and the constrained field types every Klar object shares.

Klar validates with class-validator, which never coerces: ``"19.99"`` is not a number, ``1111`` is not
a string and ``true`` is not a number. The models are therefore strict. Each constrained type is one
pydantic-core schema (no Python validator runs on the valid path) wrapped in a custom error type, so
the error path (:mod:`airflow_provider_klar.models._messages`) can turn it into a message with a hint.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

#: Upper bound (exclusive) of a plausible Unix timestamp in seconds: 2286-11-20. A 13-digit value is
#: milliseconds, a classic mistake; larger values are not timestamps at all.
MAX_TIMESTAMP = 10_000_000_000

#: ISO 4217 currency codes: the active ones plus those withdrawn recently enough to appear in order
#: history (HRK until 2023, SLL, VEF, BYR, MRO, STD, ...). Hand-kept because no well-kept library in
#: the provider's dependencies ships the list; ``tests/unit/test_models_types.py`` compares it with
#: Babel's list when Babel is installed.
_ISO_4217 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BYR BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EEK EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK
    JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LTL LVL LYD MAD MDL MGA MKD
    MMK MNT MOP MRO MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STD STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VEF VES VND VUV WST XAF
    XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMK ZMW ZWG ZWL
"""
CURRENCY_CODES: frozenset[str] = frozenset(_ISO_4217.split())


class KlarModel(BaseModel):
    """Base of every Klar object: strict types, camelCase JSON names, unknown fields kept.

    Input may use the camelCase JSON names or the snake_case attribute names; output uses camelCase.
    Fields the input did not set stay unset, so ``model_dump(mode="json", exclude_unset=True)`` gives
    back the input exactly, unknown fields included (Klar may accept fields newer than this package).
    Fields that were not sent read as ``None``.

    ``model_dump`` and ``model_dump_json`` leave unset fields out by default (``exclude_unset=True``):
    Klar rejects most fields sent as null, so a dump must not invent them. Pass
    ``exclude_unset=False`` for pydantic's usual behaviour.
    """

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        allow_inf_nan=False,
        # Klar's ids are opaque: keep whitespace exactly as sent.
        str_strip_whitespace=False,
    )

    def model_dump(self, *, exclude_unset: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Return the model as a dict with camelCase names; unset fields are left out by default.

        :param exclude_unset: Leave out fields the input did not set (default ``True``).
        :param kwargs: Any other argument of :meth:`pydantic.BaseModel.model_dump`.
        """
        return super().model_dump(exclude_unset=exclude_unset, **kwargs)

    def model_dump_json(self, *, exclude_unset: bool = True, **kwargs: Any) -> str:
        """Return the model as JSON with camelCase names; unset fields are left out by default.

        :param exclude_unset: Leave out fields the input did not set (default ``True``).
        :param kwargs: Any other argument of :meth:`pydantic.BaseModel.model_dump_json`.
        """
        return super().model_dump_json(exclude_unset=exclude_unset, **kwargs)


# eq=False: hashed by identity, since typing hashes Annotated metadata and the schemas are dicts.
@dataclass(frozen=True, eq=False)
class _Constrained:
    """A pydantic-core schema with one custom error type and a hand-written JSON Schema."""

    error_type: str
    schema: core_schema.CoreSchema
    json: dict[str, Any]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.custom_error_schema(
            self.schema, custom_error_type=self.error_type, custom_error_message=self.error_type
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.json)


#: Metadata key of schema parts that also accept Python objects JSON cannot carry (and convert them).
PYTHON_ONLY = "klar_python_only"


def number(
    error_type: str,
    *,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
    lt: int | None = None,
) -> _Constrained:
    """Return the schema of a JSON number: a finite int or float (not a bool, not a string).

    An int stays an int and a float a float, so the output is the input to the byte. pydantic-core's
    strict float also takes a finite :class:`~decimal.Decimal` (what database drivers return for
    NUMERIC columns) and makes it a float; the float part is marked :data:`PYTHON_ONLY` so the record
    validator's fast path can refuse Decimals and have such records dumped to JSON types.

    :param error_type: The custom error type raised for any violation (it selects the message).
    :param ge: Inclusive lower bound.
    :param gt: Exclusive lower bound.
    :param le: Inclusive upper bound.
    :param lt: Exclusive upper bound.
    """
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    union = core_schema.union_schema(
        [
            core_schema.int_schema(strict=True, ge=ge, gt=gt, le=le, lt=lt),
            core_schema.float_schema(
                strict=True, allow_inf_nan=False, ge=ge, gt=gt, le=le, lt=lt, metadata={PYTHON_ONLY: True}
            ),
        ],
        mode="left_to_right",
    )
    json: dict[str, Any] = {"type": "number"}
    names = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    json.update({names[k]: v for k, v in bounds.items() if v is not None})
    return _Constrained(error_type, union, json)


def code(error_type: str, codes: Collection[str] | None, pattern: str) -> _Constrained:
    """Return the schema of a code string: one of ``codes``, or matching ``pattern`` when codes is None.

    :param error_type: The custom error type raised for any violation.
    :param codes: The allowed values.
    :param pattern: The regular expression of a well-formed code (also the JSON Schema's pattern).
    """
    schema = (
        core_schema.literal_schema(sorted(codes))
        if codes is not None
        else core_schema.str_schema(strict=True, pattern=pattern)
    )
    return _Constrained(error_type, schema, {"type": "string", "pattern": pattern})


# Error types: the message for each is in ``_messages.py``.
E_NUMBER = "klar_number"
E_NON_NEGATIVE = "klar_non_negative"
E_TAX_RATE = "klar_tax_rate"
E_TIMESTAMP = "klar_timestamp"
E_CANCELLED_AT = "klar_cancelled_at"
E_CURRENCY = "klar_currency"
E_COUNTRY2 = "klar_country_2"
E_COUNTRY3 = "klar_country_3"
E_VERSION = "klar_version"
E_COGS_KEY = "klar_cogs_key"

#: Any finite number: totals that are only checksums, and cost totals (credits may be negative).
Money = Annotated[float, number(E_NUMBER)]
#: A finite number >= 0: unit prices, per-unit discounts and taxes, quantities, weights.
NonNegative = Annotated[float, number(E_NON_NEGATIVE, ge=0)]
#: A tax rate as a fraction: 0.19, not 19 and not "19%".
TaxRate = Annotated[float, number(E_TAX_RATE, ge=0, le=1)]
#: Unix seconds; 0 is allowed (real integrations send ``closedAt: 0``).
Timestamp = Annotated[float, number(E_TIMESTAMP, ge=0, lt=MAX_TIMESTAMP)]
#: Unix seconds > 0: Klar rejects ``cancelledAt: 0``; an order that is not cancelled omits the field.
CancelledAt = Annotated[float, number(E_CANCELLED_AT, gt=0, lt=MAX_TIMESTAMP)]
#: An ISO 4217 currency code such as ``EUR``.
Currency = Annotated[str, code(E_CURRENCY, CURRENCY_CODES, r"^[A-Z]{3}$")]
#: An ISO 3166-1 alpha-2 country code such as ``DE``.
Country2 = Annotated[str, code(E_COUNTRY2, None, r"^[A-Z]{2}$")]
#: An ISO 3166-1 alpha-3 country code such as ``DEU``.
Country3 = Annotated[str, code(E_COUNTRY3, None, r"^[A-Z]{3}$")]


class _NotNull:
    """Drop ``None`` from a field's accepted values while its Python type keeps it (as "not sent")."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        return schema["schema"] if schema["type"] == "nullable" else schema  # type: ignore[typeddict-item]

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(schema)


_T = TypeVar("_T")

#: A field that may be left out but not sent as null: it reads as ``None`` when it was not sent.
Omittable = Annotated[_T | None, _NotNull()]

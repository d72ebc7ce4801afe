"""What a journal entry says: its kind, and one typed body per kind.

The journal stores and signs a body as canonical JSON (``agent.chain``); here it
becomes a frozen dataclass so that the code writing an entry (``agent.ledger``)
and the code reading one (``agent.projection``, HQ's ``sync.hq.extract`` and its
insight) agree on one shape instead of each indexing ``body["x"]``.

The format does not change: ``to_body()`` gives back exactly the keys and values
``from_body()`` was given, so the bytes signed stay the bytes signed (a body that
has a key this module does not know, lacks one, or carries the wrong type is
refused: ``MalformedEntry``, code ``malformed_entry``). A field whose key a body
may lack (an enrolment without a bonus has no ``lot``) carries ``OMITTED``:
``None`` here, no key there. Money is integer minor units, points integers, days
ISO dates as text, as on disk.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import field
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeGuard, Union

from agent.errors import LedgerError


class Kind(StrEnum):
    """Every kind of journal entry. A ``str``: it is written and compared as the
    very text the journal holds, so a journal written before this type reads the same."""

    INIT = "init"
    ENROL = "enrol"
    CARD_REPLACE = "card_replace"
    EARN = "earn"
    REDEEM = "redeem"
    REFUND = "refund"
    ADJUST = "adjust"
    OFFER_TAKE = "offer_take"
    # A device key rotation (agent.rotation): hands the journal to a new key.
    KEY_ROTATE = "key_rotate"
    # A member's marketing consent given or withdrawn at the counter (issue 17).
    CONSENT = "consent"
    # What a member answered to one of HQ's suggestions at the counter (issue 15).
    SUGGESTION_ANSWER = "suggestion_answer"


def kind_of(text: str) -> Kind | None:
    """The kind a journal or an upload names, or None for one this code does not know
    (the caller refuses it with its own error code, as before this type)."""
    try:
        return Kind(text)
    except ValueError:
        return None


class MalformedEntry(LedgerError):
    """A journal entry's body is not the shape its kind has (exit 1: the journal, not
    the cashier, is wrong)."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed_entry", message)


# The metadata of a field whose key the body may lack: ``None`` means no key at all.
_OMITTED = "omitted"
OMITTED = {_OMITTED: True}


class Part:
    """A JSON object with a fixed set of keys, read and written field by field."""

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = _writer(type(self))(self)
        return body

    def _loop_to_body(self) -> dict[str, Any]:
        """``to_body`` field by field: the reference ``_generate_writer`` unrolls."""
        body: dict[str, Any] = {}
        for name, omitted, _ in _spec(type(self)).fields:
            value = getattr(self, name)
            if value is None and omitted:
                continue
            body[name] = _to_json(value)
        return body

    @classmethod
    def from_body(cls, body: Any, where: str = "body") -> Self:
        """The typed form of ``body``; ``MalformedEntry`` names the first key that is
        missing, unknown or of the wrong type.

        Every entry HQ stores is read here (ingest, insight's facts) and so is every
        one a simulated till writes: the compiled readers of ``_spec`` take the body
        in one pass without looking at annotations. A body they refuse is read again
        by ``_checked_from_body``, the reference, which names what is wrong (the
        same verdict: tests/test_entries.py)."""
        try:
            return cls._fast_from_body(body)
        except _Refused:
            return cls._checked_from_body(body, where)

    @classmethod
    def _fast_from_body(cls, body: Any) -> Self:
        part: Self = _reader_of(cls)(body)
        return part

    @classmethod
    def _loop_from_body(cls, body: Any) -> Self:
        """The compiled readers walked field by field: what ``_generate_reader``'s
        code does in one function per class (tests/test_entries.py compares them)."""
        if not isinstance(body, dict):
            raise _Refused
        spec = _spec(cls)
        if not spec.names.issuperset(body):
            raise _Refused
        values = dict(spec.omitted)
        for name, omitted, read in spec.fields:
            if name in body:
                value = body[name]
                if value is None and omitted:
                    raise _Refused
                values[name] = read(value)
            elif not omitted:
                raise _Refused
        # Every field is set here, so the frozen dataclass's __init__ (a setattr per
        # field through object.__setattr__) is skipped; no part has a __post_init__.
        part = object.__new__(cls)
        part.__dict__.update(values)
        return part

    @classmethod
    def _checked_from_body(cls, body: Any, where: str) -> Self:
        """``from_body`` field by field from the annotations, naming the first fault."""
        if not isinstance(body, dict):
            raise MalformedEntry(f"{where}: not a JSON object")
        declared = dataclasses.fields(cls)  # type: ignore[arg-type]
        unknown = sorted(set(body) - {item.name for item in declared})
        if unknown:
            raise MalformedEntry(f"{where}: unknown key {unknown[0]!r}")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for item in declared:
            if item.name not in body:
                if item.metadata.get(_OMITTED):
                    continue
                raise MalformedEntry(f"{where}: missing key {item.name!r}")
            value = body[item.name]
            if value is None and item.metadata.get(_OMITTED):
                # An omitted field is a missing key, never a null: refused, so that
                # to_body gives back the very keys it was given.
                raise MalformedEntry(f"{where}.{item.name}: null where the key is left out")
            values[item.name] = _read(hints[item.name], value, f"{where}.{item.name}")
        return cls(**values)


class _Refused(Exception):
    """A compiled reader's "no": ``Part._checked_from_body`` says why."""


Reader = Callable[[Any], Any]
# A JSON value's canonical text: of one already checked, and of a loose one (a
# ``result``, which it walks for floats first); ``agent.chain`` gives both.
Texts = tuple[Callable[[Any], str], Callable[[Any], str]]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """A part's fields as the compiled path reads and writes them: (key, omitted
    when None, reader), in declaration order, and the set of keys."""

    fields: tuple[tuple[str, bool, Reader], ...]
    names: frozenset[str]
    omitted: tuple[tuple[str, None], ...]  # what a missing omitted key reads as


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        declared = dataclasses.fields(cls)
        hints = _hints(cls)
        fields = tuple(
            (item.name, bool(item.metadata.get(_OMITTED)), _compile(hints[item.name]))
            for item in declared
        )
        names = frozenset(item.name for item in declared)
        omitted = tuple((name, None) for name, left_out, _ in fields if left_out)
        spec = _SPECS[cls] = _Spec(fields, names, omitted)
    return spec


def _compile(hint: Any) -> Reader:
    """A reader for one annotation that returns what ``_read`` returns or raises
    ``_Refused`` where ``_read`` raises ``MalformedEntry`` (no message: the checked
    path makes it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        (inner_hint,) = [arg for arg in args if arg is not type(None)]
        inner = _compile(inner_hint)
        if type(None) not in args:
            return inner
        return lambda value: None if value is None else inner(value)
    if hint is int:
        return _read_int
    if hint is str:
        return _read_str
    if origin is tuple:
        item = _compile(args[0])
        return lambda value: tuple(map(item, _list(value)))
    if origin is dict:
        return _read_int_dict if args[1] is int else _read_dict
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint._fast_from_body
    raise TypeError(f"no reader for {hint!r}")  # a declaration error, not data


_READERS: dict[type, Reader] = {}
# Each class's reader that also writes the body's canonical text (``text_reader``).
_TEXT_READERS: dict[tuple[type, Texts], Reader] = {}
_escape = json.encoder.encode_basestring  # json.dumps(ensure_ascii=False)'s escaping


def _generate_reader(cls: type, texts: Texts | None = None) -> Reader:
    """``Part._loop_from_body`` for ``cls`` as the code of one function (as
    ``dataclasses`` writes ``__init__``): no loop over the fields, ints and texts
    checked inline, nested parts (and tuples of them) read by their own generated
    readers called directly, a dict of ints checked inline. Every entry HQ ingests
    is read here, and again by the insight facts (issue 18).

    With ``texts`` (``Texts``: how to write a dict's text), the function returns
    ``(part, text)``: the part as above and ``canonical(part.to_body())`` as text,
    written in the same pass (``text_reader``)."""
    spec = _spec(cls)
    names: dict[str, Any] = {"names": spec.names, "new": object.__new__, "cls": cls}
    names.update(Refused=_Refused, escape=_escape)
    if texts is not None:
        names.update(json_text=texts[0], loose_text=texts[1])
    # A missing key is a KeyError, turned into the refusal at the end (a ``try``
    # costs nothing until it catches): one dict lookup a key, not two.
    lines = [
        "def read(body):",
        "    if not isinstance(body, dict) or not names.issuperset(body):",
        "        raise Refused",
        "    try:",
    ]
    for number, (name, omitted, reader) in enumerate(spec.fields):
        value = f"v{number}"
        hint = _hints(cls)[name]
        names[f"r{number}"] = reader
        check = _inline_check(hint, value, f"r{number}", names, texts)
        if omitted:
            lines += [
                f"        if {name!r} in body:",
                f"            {value} = body[{name!r}]",
                f"            if {value} is None:",
                "                raise Refused",
                *(f"            {line}" for line in check),
                "        else:",
                f"            {value} = None",
            ]
        else:
            lines += [f"        {value} = body[{name!r}]", *(f"        {line}" for line in check)]
    lines += ["    except KeyError:", "        raise Refused from None"]
    # The __dict__ in _loop_from_body's order: omitted fields first, then the rest.
    order = [n for n, left_out, _ in spec.fields if left_out]
    order += [n for n, left_out, _ in spec.fields if not left_out]
    numbers = {n: i for i, (n, _, _) in enumerate(spec.fields)}
    items = ", ".join(f"{n!r}: v{numbers[n]}" for n in order)
    lines += ["    part = new(cls)", f"    part.__dict__.update({{{items}}})"]
    written = "" if texts is None else f", {_text_expression(cls, names)}"
    lines.append(f"    return part{written}")
    exec("\n".join(lines), names)  # noqa: S102 -- code made here from field names
    read: Reader = names["read"]
    return read


def _text_expression(cls: type, names: dict[str, Any]) -> str:
    """The generated reader's expression for the canonical text of what it read:
    each key in sorted order, a key the body may lack left out when None (as
    ``Part.to_body`` leaves it out); ``v<n>`` holds a field's value, ``t<n>`` the
    text of a field the reader wrote as it read (a part, a list, a dict)."""
    numbered = sorted((name, n, omitted) for n, (name, omitted, _) in enumerate(_spec(cls).fields))
    names.update(null="null", empty="")
    # Every key but the first is written after a comma; when the first key may be
    # left out, each gets one and the text's first comma is cut.
    cut = bool(numbered) and numbered[0][2]
    parts = []
    for place, (name, n, omitted) in enumerate(numbered):
        key = ("," if place or cut else "") + _escape(name) + ":"
        names[f"k{n}"] = key
        expression = _field_text(_hints(cls)[name], f"v{n}", f"t{n}")
        if omitted:
            absent = f"empty if v{n} is None else"
            parts.append(f"{{{absent} k{n}}}{{{absent} {expression}}}")
        else:
            parts.append(f"{key}{{{expression}}}")
    body = "".join(parts)
    return f"'{{' + f'{body}'[1:] + '}}'" if cut else f"f'{{{{{body}}}}}'"


def _field_text(hint: Any, value: str, text: str) -> str:
    """The text of one field, as the field of an f-string: an int as the f-string
    formats it (``int.__repr__``), a text escaped, anything else the ``t<n>`` the
    reader wrote (``_inline_check``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return f"null if {value} is None else {_field_text(inner, value, text)}"
    if hint is int:
        return value
    if hint is str:
        return f"escape({value})"
    return text


def text_reader(kind: str, texts: Texts) -> Reader | None:
    """For a body of ``kind`` (its text), a function returning ``(typed body,
    canonical text of the body)`` in one pass, or raising ``Refused`` where the
    compiled reader refuses; None for a kind no till of this version writes.
    ``texts`` write a dict of ints and a loose value (a ``result``), raising
    TypeError or ValueError for one ``canonical`` refuses. ``agent.chain.typed_digest`` reads
    every body HQ ingests here (tests/test_chain_typed_digest.py: the same as
    ``readable`` and ``canonical``)."""
    cls = _BY_TEXT.get(kind)
    return None if cls is None else _text_reader_of(cls, texts)


def _text_reader_of(cls: type, texts: Texts) -> Reader:
    read = _TEXT_READERS.get((cls, texts))
    if read is None:
        read = _TEXT_READERS[cls, texts] = _generate_reader(cls, texts)
    return read


# What a generated reader raises for a body it does not take (``text_reader``).
Refused = _Refused


_WRITERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _writer(cls: type) -> Callable[[Any], dict[str, Any]]:
    write = _WRITERS.get(cls)
    if write is None:
        write = _WRITERS[cls] = _generate_writer(cls)
    return write


def _generate_writer(cls: type) -> Callable[[Any], dict[str, Any]]:
    """``Part._loop_to_body`` for ``cls`` as one function: an int or a text field is
    copied as it is, a part, a tuple of parts or a dict of the declared type is
    written inline, any other value goes through ``_to_json`` (the simulated till
    writes every body here)."""
    names: dict[str, Any] = {"to_json": _to_json, "plain": (int, str, type(None))}
    lines = ["def write(part):", "    body = {}"]
    for name, omitted, _ in _spec(cls).fields:
        hint = _hints(cls)[name]
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        scalar = hint in (int, str) or (bool(args) and args[0] in (int, str) and len(args) == 1)
        convert = (
            "value if type(value) in plain else to_json(value)" if scalar else _convert(hint, names)
        )
        lines.append(f"    value = part.{name}")
        if omitted:
            lines += ["    if value is not None:", f"        body[{name!r}] = {convert}"]
        else:
            lines.append(f"    body[{name!r}] = {convert}")
    lines.append("    return body")
    exec("\n".join(lines), names)  # noqa: S102 -- code made here from field names
    write: Callable[[Any], dict[str, Any]] = names["write"]
    return write


def _convert(hint: Any, names: dict[str, Any]) -> str:
    """What ``_to_json(value)`` is for a value of ``hint``'s type, as an expression that
    checks the type it assumes (anything else goes through ``_to_json``)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is not tuple and len(args) == 1:  # X | None
        hint, args = args[0], list(typing.get_args(args[0]))
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, Part):
        names[f"{hint.__name__}_"], names[f"write_{hint.__name__}"] = hint, _writer(hint)
        return (
            f"write_{hint.__name__}(value) if type(value) is {hint.__name__}_ else to_json(value)"
        )
    parts = origin is tuple and len(args) == 2 and args[1] is Ellipsis
    if parts and isinstance(args[0], type) and issubclass(args[0], Part):
        item = args[0].__name__
        names[f"{item}_"], names[f"write_{item}"] = args[0], _writer(args[0])
        each = f"write_{item}(item) if type(item) is {item}_ else to_json(item)"
        return f"[{each} for item in value] if type(value) is tuple else to_json(value)"
    if origin is dict:
        return "dict(value) if type(value) is dict else to_json(value)"
    return "to_json(value)"


def _inline_check(
    hint: Any,
    value: str,
    reader: str,
    names: dict[str, Any],
    texts: Texts | None = None,
) -> list[str]:
    """The lines that check (or read) ``value`` against ``hint``: an int, a text or
    a dict of ints inline, a part or a tuple of parts through the parts' generated
    readers (put in ``names``), anything else through its compiled reader. With
    ``texts`` (``_generate_reader``'s text readers) they also set ``t<n>`` (for
    ``v<n>``) to the text of a value that is not an int or a text."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin in (Union, types.UnionType) and type(None) in args
    inner = next(arg for arg in args if arg is not type(None)) if optional else hint
    guard = f"{value} is not None and " if optional else ""
    if inner is int:
        return [f"if {guard}type({value}) is not int:", "    raise Refused"]
    if inner is str:
        return [f"if {guard}not isinstance({value}, str):", "    raise Refused"]
    text = "t" + value[1:]
    inner_origin, inner_args = typing.get_origin(inner), typing.get_args(inner)
    items = inner_args[0] if inner_origin is tuple else None
    if _is_part(inner):
        if texts is not None:
            names[f"{reader}p"] = _text_reader_of(inner, texts)
            check = [f"{value}, {text} = {reader}p({value})"]
        else:
            names[f"{reader}p"] = _reader_of(inner)
            check = [f"{value} = {reader}p({value})"]
    elif _is_part(items):
        check = [f"if not isinstance({value}, list):", "    raise Refused"]
        if texts is not None:
            names[f"{reader}p"] = _text_reader_of(items, texts)
            check += [  # most receipts have one line: no list made for it
                f"if len({value}) == 1:",
                f"    {value}, {text} = {reader}p({value}[0])",
                f"    {value}, {text} = ({value},), '[' + {text} + ']'",
                "else:",
                f"    {text} = list(map({reader}p, {value}))",
                f"    {value} = tuple([item[0] for item in {text}])",
                f"    {text} = '[' + ','.join([item[1] for item in {text}]) + ']'",
            ]
        else:
            names[f"{reader}p"] = _reader_of(items)
            check.append(f"{value} = tuple(map({reader}p, {value}))")
    elif inner_origin is dict and inner_args[1] is int:
        check = [
            f"if not isinstance({value}, dict):",
            "    raise Refused",
            f"for item in {value}.values():",
            "    if type(item) is not int:",
            "        raise Refused",
            f"{value} = dict({value})",
            *([] if texts is None else [f"{text} = json_text({value})"]),
        ]
    elif texts is not None:
        check = [f"{value} = {reader}({value})", f"{text} = loose_text({value})"]
    else:
        return [f"{value} = {reader}({value})"]
    if not optional:
        return check
    return [f"if {value} is not None:", *(f"    {line}" for line in check)]


def _is_part(hint: Any) -> TypeGuard[type[Part]]:
    return isinstance(hint, type) and issubclass(hint, Part)


def _reader_of(cls: type) -> Reader:
    """``cls``'s generated reader (what ``Part._fast_from_body`` calls)."""
    read = _READERS.get(cls)
    if read is None:
        read = _READERS[cls] = _generate_reader(cls)
    return read


def _read_int(value: Any) -> int:
    if type(value) is not int:
        raise _Refused
    return value


def _read_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Refused
    return value


def _read_dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _Refused
    return dict(value)


def _read_int_dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict) or any(type(item) is not int for item in value.values()):
        raise _Refused
    return dict(value)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A class's resolved annotations (the module uses postponed annotations)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _to_json(value: Any) -> Any:
    if isinstance(value, Part):
        return value.to_body()
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def _read(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against the field's annotation (the few shapes bodies use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _read(inner, value, where)
    if hint is int:
        if type(value) is not int:
            raise MalformedEntry(f"{where}: not an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise MalformedEntry(f"{where}: not text")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise MalformedEntry(f"{where}: not a list")
        return tuple(_read(args[0], item, f"{where}[{n}]") for n, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise MalformedEntry(f"{where}: not a JSON object")
        if args[1] is int and any(type(item) is not int for item in value.values()):
            raise MalformedEntry(f"{where}: a value is not an integer")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint.from_body(value, where)
    raise TypeError(f"{where}: no reader for {hint!r}")  # a declaration error, not data


# -- the parts bodies share --------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lot(Part):
    """When the points an entry credits may be spent, and when they run out."""

    spendable_on: str
    expires_on: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member(Part):
    """An enrolled member as the enrolment records them."""

    member_id: str
    # None in an enrolment written since issue 17: the personal fields (name, phone
    # key, birthday, gender, district, household) are in ``sealed`` (agent.privacy).
    name: str | None
    phone_key: str | None
    birthday: str | None
    gender: str | None
    district: str | None
    household: int | None
    consent_marketing: int
    enrolled_at: str
    enrolled_store: str
    enrolled_till: str
    enrolled_by: str | None
    # Entries written before issue 12 carry the number's last four digits.
    phone_last4: str | None = field(default=None, metadata=OMITTED)
    # The personal fields sealed under the member's own key (agent.privacy, issue 17).
    sealed: str | None = field(default=None, metadata=OMITTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SaleLine(Part):
    """A receipt line of an earn, priced."""

    category: str
    qty: int
    amount: int
    points: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefundLine(Part):
    """What a refund takes back of one line of the sale (``line_no`` in the earn)."""

    line_no: int
    qty: int
    amount: int
    points: int


# -- the bodies ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Body(Part):
    """What every body may end with: the projection's ``effects`` (``delta``,
    ``expired``; written by ``agent.ledger._record``, absent while an entry is being
    decided) and the cashier's ``result``, kept so that a replay answers the same."""

    kind: ClassVar[Kind]
    effects: dict[str, int] | None = field(default=None, metadata=OMITTED)
    result: dict[str, Any] | None = field(default=None, metadata=OMITTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnAccount(Body):
    """A body that moves points on an account on a day: the account is a member id,
    or ``"C"`` + a programme card that earned here before it was enrolled
    (``member_id`` is then None)."""

    account: str
    member_id: str | None
    day: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Init(Body):
    kind = Kind.INIT
    store: str
    till: str
    device_id: str
    public_key: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Enrol(Body):
    kind = Kind.ENROL
    member: Member
    card: str
    card_kind: str
    day: str
    bonus: int
    lot: Lot | None = field(default=None, metadata=OMITTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CardReplace(Body):
    kind = Kind.CARD_REPLACE
    member_id: str
    old_card: str
    card: str
    day: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Earn(OnAccount):
    kind = Kind.EARN
    card: str | None
    receipt: str
    fingerprint: str
    lines: tuple[SaleLine, ...]
    amount: int
    points: int
    tier: str
    lot: Lot


@dataclasses.dataclass(frozen=True, kw_only=True)
class Redeem(OnAccount):
    kind = Kind.REDEEM
    receipt: str
    fingerprint: str
    points: int
    value: int
    # The sale's amount, None when the sale is not on this till (a voucher).
    amount: int | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Refund(OnAccount):
    kind = Kind.REFUND
    receipt: str
    lines: tuple[RefundLine, ...]
    amount: int
    taken: int
    returned: int
    # A points-multiplier offer's bonus taken back with the sale's points.
    bonus_taken: int | None = field(default=None, metadata=OMITTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adjust(OnAccount):
    kind = Kind.ADJUST
    points: int
    reason: str
    lot: Lot


@dataclasses.dataclass(frozen=True, kw_only=True)
class OfferTake(OnAccount):
    kind = Kind.OFFER_TAKE
    offer_id: str
    campaign: str
    offer_kind: str
    offer_value: str
    title: str
    receipt: str
    points: int
    value: int
    lot: Lot | None = field(default=None, metadata=OMITTED)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeyRotate(Body):
    kind = Kind.KEY_ROTATE
    public_key: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Consent(Body):
    """Marketing consent given (1) or withdrawn (0); the latest one counts."""

    kind = Kind.CONSENT
    member_id: str
    marketing: int
    day: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuggestionAnswer(Body):
    """The member's answer to one of HQ's suggestions (``agent.suggestions``):
    ``outcome`` is ``accepted``, ``declined`` or ``later``; ``reason`` is copied from
    the suggestion so that HQ can count answers by reason without it."""

    kind = Kind.SUGGESTION_ANSWER
    member_id: str
    suggestion: str
    reason: str
    outcome: str
    day: str


BODIES: dict[Kind, type[Body]] = {
    body.kind: body
    for body in (
        Init,
        Enrol,
        CardReplace,
        Earn,
        Redeem,
        Refund,
        Adjust,
        OfferTake,
        KeyRotate,
        Consent,
        SuggestionAnswer,
    )
}


def read_body(kind: Kind, body: Any, seq: int | None = None) -> Body:
    """The typed body of an entry of ``kind``; ``MalformedEntry`` if it is not one."""
    where = f"journal entry {seq}: {kind} body" if seq is not None else f"{kind} body"
    return BODIES[kind].from_body(body, where)


def readable(kind: str, body: Any) -> Body | None:
    """The typed body of an entry read back, or None when no till of this version
    writes it (a kind it does not know, a body not of its kind's shape). For readers
    that leave such an entry out of what they derive rather than refuse it: HQ's
    (an upload is judged by its chain and signatures, not its bodies), the audit's
    key lookup and the key rotation's crash recovery."""
    cls = _BY_TEXT.get(kind)
    if cls is None:
        return None
    # The compiled reader, as ``read_body`` runs it first; only a body it refuses
    # goes on to ``read_body`` (the same verdict, tests/test_entries.py): HQ reads
    # every entry it ingests here, and the ``Kind`` lookup and the message's text
    # cost 0.3-0.5 µs of a good one's 4-5.
    try:
        return cls._fast_from_body(body)
    except _Refused:
        pass
    try:
        return read_body(cls.kind, body)
    except MalformedEntry:
        return None


# A kind's text -> its body's class (a str ``Kind`` hashes as its text).
_BY_TEXT: dict[str, type[Body]] = {str(kind): body for kind, body in BODIES.items()}

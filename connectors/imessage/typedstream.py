"""Reading the text out of `message.attributedBody`: an NSAttributedString archived with
NSArchiver's typedstream format (not NSKeyedArchiver's plist), which Messages writes instead
of `message.text` for most messages since macOS Ventura.

The format (as documented by the public decoders: GNUstep's NSUnarchiver, dgelessus's
python-typedstream, imessage-exporter): a header `04 0b "streamtyped" 81 e8 03` (streamer
version 4; the signature, "typedstream" when big-endian; system version 1000), then typed
groups: a type encoding (a shared string: `84 <len> <bytes>` when new, a reference byte
>= 0x92 when seen before) followed by values. Integers are one signed byte, or tag 0x81 +
2 bytes, or 0x82 + 4 bytes, in the stream's byte order. Objects are `84` + class chain
(`84 84 <len> "NSString" <version>` … `85` nil or a reference) + contents + `86`.
The attributed string's first member is its NSString (or NSMutableString), whose contents are
one group of encoding `+` (bytes with a length): `84 01 2b <length> <UTF-8 bytes>`. That
is the text. The attribute runs that follow (`iI` ranges, an NSDictionary per run) carry
mentions, links and inline attachment markers, which this reader does not need.
"""

from __future__ import annotations

HEADER_SIGNATURES = {b"streamtyped": "little", b"typedstream": "big"}
TAG_INTEGER_2, TAG_INTEGER_4, TAG_NEW = 0x81, 0x82, 0x84
STRING_CLASSES = (b"NSString", b"NSMutableString")
OBJECT_REPLACEMENT = "\ufffc"  # where an inline attachment sits in the text


class TypedStreamError(ValueError):
    """Not a typedstream, or no string where the attributed string's text should be."""


def attributed_text(blob: bytes) -> str:
    """The plain text of an archived NSAttributedString."""
    reader = _Reader(blob)
    reader.header()
    start = _string_class(blob, reader.pos)
    encoding = blob.find(bytes([TAG_NEW, 1]) + b"+", start)
    if encoding < 0:
        raise TypedStreamError("no string contents after the NSString class")
    reader.pos = encoding + 3
    length = reader.integer(unsigned=True)
    data = reader.take(length)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TypedStreamError("the string is not UTF-8") from None


def _string_class(blob: bytes, after: int) -> int:
    """Where the first NSString / NSMutableString class name (a new shared string) ends."""
    found = [blob.find(bytes([TAG_NEW, len(name)]) + name, after) for name in STRING_CLASSES]
    hits = [(i, name) for i, name in zip(found, STRING_CLASSES) if i >= 0]
    if not hits:
        raise TypedStreamError("no NSString in the archive")
    index, name = min(hits)
    return index + 2 + len(name)


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos, self.order = blob, 0, "little"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.blob):
            raise TypedStreamError("truncated typedstream")
        out = self.blob[self.pos:self.pos + n]
        self.pos += n
        return out

    def integer(self, *, unsigned: bool = False) -> int:
        head = self.take(1)[0]
        if head == TAG_INTEGER_2:
            return int.from_bytes(self.take(2), self.order, signed=not unsigned)  # type: ignore[arg-type]
        if head == TAG_INTEGER_4:
            return int.from_bytes(self.take(4), self.order, signed=not unsigned)  # type: ignore[arg-type]
        if 0x80 <= head <= 0x91:
            raise TypedStreamError(f"tag 0x{head:02x} where an integer should be")
        return head if unsigned or head < 0x80 else head - 0x100

    def header(self) -> None:
        if self.integer() != 4:
            raise TypedStreamError("not a typedstream (streamer version is not 4)")
        signature = self.take(self.integer(unsigned=True))
        if signature not in HEADER_SIGNATURES:
            raise TypedStreamError("not a typedstream (no streamtyped signature)")
        self.order = HEADER_SIGNATURES[signature]
        self.integer()  # system version (1000)


# ---- the attribute runs (mentions): a small unarchiver for the classes Messages uses ----------

MENTION_KEY = "__kIMMentionConfirmedMention"
TAG_NIL, TAG_END = 0x85, 0x86
FIRST_REFERENCE = -110  # signed: 0x92 is reference 0; positive bytes continue the numbering
INTEGER_TYPES = set("cCsSiIlLqQ")


def mentions(blob: bytes) -> list[str]:
    """The handles (phone or email) the sender mentioned: `__kIMMentionConfirmedMention`
    values in the string's attribute runs. Empty when there are none or the archive holds a
    class this reader does not know (mentions are extras; the text is read without this)."""
    try:
        root = _Unarchiver(blob).root()
    except (TypedStreamError, IndexError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return []
    found: list[str] = []
    for attributes in root.get("runs", []) if isinstance(root, dict) else []:
        value = attributes.get(MENTION_KEY) if isinstance(attributes, dict) else None
        if isinstance(value, str) and value not in found:
            found.append(value)
    return found


class _Unarchiver(_Reader):
    """Objects, classes and C strings share one reference table; type encodings and class names
    another (GNUstep's NSUnarchiver, python-typedstream)."""

    def __init__(self, blob: bytes) -> None:
        super().__init__(blob)
        self.strings: list[bytes] = []
        self.objects: list[object] = []

    def root(self) -> object:
        self.header()
        (value,) = self.group()
        return value

    def _reference(self, head: int) -> int:
        self.pos -= 1
        return self.integer() - FIRST_REFERENCE

    def shared_string(self) -> bytes | None:
        head = self.take(1)[0]
        if head == TAG_NIL:
            return None
        if head == TAG_NEW:
            value = self.take(self.integer(unsigned=True))
            self.strings.append(value)
            return value
        return self.strings[self._reference(head)]

    def c_string(self) -> bytes | None:
        head = self.take(1)[0]
        if head == TAG_NIL:
            return None
        if head == TAG_NEW:
            value = self.shared_string()
            self.objects.append(value)
            return value
        return self.objects[self._reference(head)]  # type: ignore[return-value]

    def klass(self) -> list[str]:
        """The class chain, subclass first."""
        head = self.take(1)[0]
        if head == TAG_NIL:
            return []
        if head != TAG_NEW:
            return self.objects[self._reference(head)]  # type: ignore[return-value]
        name = (self.shared_string() or b"").decode()
        self.integer()  # class version
        chain: list[str] = [name]
        self.objects.append(chain)
        chain += self.klass()
        return chain

    def object(self) -> object:
        head = self.take(1)[0]
        if head == TAG_NIL:
            return None
        if head != TAG_NEW:
            return self.objects[self._reference(head)]
        index = len(self.objects)
        self.objects.append(None)
        value = self.contents(self.klass())
        if self.take(1)[0] != TAG_END:
            raise TypedStreamError("object not closed")
        self.objects[index] = value
        return value

    def group(self) -> list[object]:
        encoding = (self.shared_string() or b"").decode()
        values: list[object] = []
        for kind in encoding:
            if kind == "@":
                values.append(self.object())
            elif kind == "+":
                values.append(self.take(self.integer(unsigned=True)))
            elif kind == "*":
                values.append(self.c_string())
            elif kind in INTEGER_TYPES:
                values.append(self.integer(unsigned=kind.isupper()))
            else:
                raise TypedStreamError(f"type {kind!r} not read here")
        return values

    def contents(self, chain: list[str]) -> object:
        if "NSString" in chain:
            (data,) = self.group()
            return data.decode("utf-8")  # type: ignore[union-attr]
        if "NSAttributedString" in chain:
            (text,) = self.group()
            runs: list[object] = []
            while self.blob[self.pos] != TAG_END:  # (attribute index, run length), then a new dictionary
                values = self.group()
                runs += [v for v in values if isinstance(v, dict)]
            return {"text": text, "runs": runs}
        if "NSDictionary" in chain:
            (count,) = self.group()
            out: dict[object, object] = {}
            for _ in range(int(count)):  # type: ignore[call-overload]
                (key,) = self.group()
                (value,) = self.group()
                out[key if isinstance(key, (str, int)) else repr(key)] = value
            return out
        if "NSArray" in chain:
            (count,) = self.group()
            return [self.group()[0] for _ in range(int(count))]  # type: ignore[call-overload]
        if "NSValue" in chain:  # NSNumber: its objCType as a C string, then a group of that type
            (kind,) = self.group()
            if not kind:
                raise TypedStreamError("NSValue without a type")
            values = self.group()
            return values[0] if len(values) == 1 else values
        raise TypedStreamError(f"class {chain[0] if chain else '?'} not read here")

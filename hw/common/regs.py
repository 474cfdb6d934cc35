"""Packed register words, declared once for the gateware and the host.

A :class:`RegisterLayout` names the fields of one register word (or of one layer-table word),
least significant first, each with its width; a name that starts with ``_`` is a reserved gap
(written 0, read 0, never named in a description). From that one declaration:

* the gateware gets an :class:`amaranth.lib.data.StructLayout` (:attr:`RegisterLayout.layout`;
  a ``StructLayout`` places its members in order from bit 0 up, exactly as declared here):
  ``Signal(REG.layout)`` or :meth:`RegisterLayout.view` of a bus word gives a view whose fields
  are read and assigned by name, :meth:`RegisterLayout.const` a constant;
* the host packs and unpacks plain ``int`` words (:meth:`RegisterLayout.pack`,
  :meth:`RegisterLayout.unpack`, :meth:`RegisterLayout.mask`) with the same bit positions;
* the memory maps describe the bits (:meth:`RegisterLayout.describe` for the register tables'
  text, :meth:`RegisterLayout.to_json` for their JSON).

The declaration itself is plain Python and builds the Amaranth layout on first use, so the
memory maps that declare registers stay importable without Amaranth (docs/layout.md).
"""

from __future__ import annotations

from typing import Any, Mapping, Union

__all__ = ["RegisterLayout", "fields_json"]

FieldSpec = Union[int, tuple[int, str]]


class RegisterLayout:
    """The fields of a packed word: ``RegisterLayout(w_frac=5, _gap=3, relu=1, has_bias=1)``.

    Each keyword is a field, least significant first: its width, or ``(width, doc)``. Names that
    start with ``_`` are reserved bits.
    """

    def __init__(self, **fields: FieldSpec):
        if not fields:
            raise ValueError("a register layout needs at least one field")
        self._fields: dict[str, tuple[int, int, str]] = {}     # name -> (lsb, width, doc)
        lsb = 0
        for name, spec in fields.items():
            width, doc = (spec, "") if isinstance(spec, int) else spec
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(f"field {name!r} must be at least 1 bit wide, not {width!r}")
            self._fields[name] = (lsb, width, doc)
            lsb += width
        self._size = lsb
        self._layout = None

    # -- the declaration ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bits of the word, reserved ones included."""
        return self._size

    @property
    def names(self) -> list[str]:
        """The named (not reserved) fields, least significant first."""
        return [n for n in self._fields if not n.startswith("_")]

    def field(self, name: str) -> tuple[int, int]:
        """``(lsb, width)`` of field ``name``."""
        lsb, width, _ = self._fields[name]
        return lsb, width

    def doc(self, name: str) -> str:
        """What field ``name`` means, as declared ("" when not given)."""
        return self._fields[name][2]

    @property
    def layout(self):
        """The :class:`amaranth.lib.data.StructLayout` of the word (built once, on first use)."""
        if self._layout is None:
            from amaranth.lib import data

            layout = data.StructLayout({n: w for n, (_, w, _) in self._fields.items()})
            assert {n: (f.offset, f.width) for n, f in layout} == \
                {n: (lsb, w) for n, (lsb, w, _) in self._fields.items()}, "StructLayout order"
            self._layout = layout
        return self._layout

    # -- host side: plain ints ------------------------------------------------------------
    def _checked(self, values: Mapping[str, int]) -> dict[str, int]:
        out = {}
        for name, v in values.items():
            if name not in self._fields or name.startswith("_"):
                raise KeyError(f"no field {name!r} in this register (fields: "
                               f"{', '.join(self.names)})")
            v = int(v)
            width = self._fields[name][1]
            if not 0 <= v < (1 << width):
                raise ValueError(f"field {name} is {width} bits wide; {v} does not fit")
            out[name] = v
        return out

    def pack(self, **values: int) -> int:
        """The word with the given fields set (others 0); a value that does not fit its field
        raises :class:`ValueError` (no silent truncation)."""
        word = 0
        for name, v in self._checked(values).items():
            word |= v << self._fields[name][0]
        return word

    def unpack(self, word: int) -> dict[str, int]:
        """``{field: value}`` of the named fields of ``word`` (bits above :attr:`size` ignored)."""
        word = int(word)
        return {n: (word >> lsb) & ((1 << w) - 1) for n, (lsb, w, _) in self._fields.items()
                if not n.startswith("_")}

    def mask(self, *names: str) -> int:
        """The bits of the named fields, set."""
        m = 0
        for name in names:
            lsb, width, _ = self._fields[name]
            m |= ((1 << width) - 1) << lsb
        return m

    # -- gateware -------------------------------------------------------------------------
    def const(self, **values: int):
        """A constant of the layout (:class:`amaranth.lib.data.Const`), fields checked as
        :meth:`pack` checks them."""
        return self.layout.const(self._checked(values))

    def view(self, value):
        """A view of the low :attr:`size` bits of ``value`` (a bus word, say) as the layout:
        its fields by name instead of slices."""
        from amaranth.hdl import Value
        from amaranth.lib import data

        return data.View(self.layout, Value.cast(value)[:self.size])

    # -- documentation --------------------------------------------------------------------
    def describe(self) -> str:
        """The fields as the register tables write them: ``bits 4:0 w_frac, bit 8 relu``."""
        parts = []
        for name, (lsb, width, doc) in self._fields.items():
            if name.startswith("_"):
                continue
            bits = f"bit {lsb}" if width == 1 else f"bits {lsb + width - 1}:{lsb}"
            parts.append(f"{bits} {name}" + (f" ({doc})" if doc else ""))
        return ", ".join(parts)

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{field: {"lsb", "width"[, "doc"]}}`` of the named fields."""
        return {n: {"lsb": lsb, "width": w, **({"doc": doc} if doc else {})}
                for n, (lsb, w, doc) in self._fields.items() if not n.startswith("_")}

    def __repr__(self) -> str:
        return f"RegisterLayout({', '.join(f'{n}={w}' for n, (_, w, _) in self._fields.items())})"


def fields_json(registers: Mapping[str, RegisterLayout]) -> dict[str, dict[str, Any]]:
    """``{register: its fields}`` for a memory map's JSON."""
    return {name: layout.to_json() for name, layout in registers.items()}

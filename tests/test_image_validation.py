"""Both image readers against the same damage (issue 14, class 3).

The EIE reader (``eie.sw.image.read_image``) and the BNN reader (``eie.sw.bnn.image.read_image``)
share one validator (``eie.sw.imagefile``): every damaged image gives an ``EieError`` of one line
naming the file and the key or line, never another exception; file names in a manifest are
confined to the image directory. The tables below damage a small image of each format in the
same ways; the CLI tests check that ``eie golden``, ``eie inspect`` and ``eie bnn golden`` turn
them into exit 2 and one ``eie: error:`` line.
"""

from __future__ import annotations

import ast
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.hw.bnn.folding import make_folding
from eie.sw import imagefile
from eie.sw.bnn import image as bnn_image
from eie.sw.bnn.image import BnnImage, random_image
from eie.sw.encode import QuantLayer, build_image
from eie.sw import image as eie_image

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- the two images


def _eie_layers(seed: int = 0) -> list[QuantLayer]:
    rng = np.random.default_rng(seed)
    sizes = [11, 9, 5]
    out = []
    for l in range(2):
        shape = (sizes[l + 1], sizes[l])
        codes = (rng.integers(1, 16, shape) * (rng.random(shape) < 0.5)).astype(np.uint8)
        out.append(QuantLayer(codes=codes,
                              codebook=np.concatenate([[0], rng.integers(-300, 301, 15)]),
                              w_frac=7, bias=rng.integers(-500, 501, sizes[l + 1]),
                              relu=l == 0))
    return out


def write_eie(d: Path) -> Path:
    """11-9-5, 3 PEs, biases, balanced placement (format_version 2, row_order)."""
    eie_image.write_image(build_image(_eie_layers(), n_pe=3, balance=True), d)
    return d


def bnn_source() -> BnnImage:
    return random_image(make_folding([11, 7, 2], "4:3,7:2"), np.random.default_rng(0))


def write_bnn(d: Path) -> Path:
    """11-7-2 folded 4:3,7:2: layer 0 has 3 PEs of nf * sf = 9 four-bit words and 3 threshold
    files of 3 four-bit words; layer 1 has 2 PEs of one 7-bit word."""
    bnn_image.write_image(bnn_source(), d)
    return d


FORMATS = {
    # writer, reader, the hex file the common damage hits, its lines and digits a line
    "eie": dict(write=write_eie, read=eie_image.read_image, hex="pe1_ptr.hex", lines=22,
                digits=8),
    "bnn": dict(write=write_bnn, read=bnn_image.read_image, hex="l0_pe1_w.hex", lines=9,
                digits=1),
}


# ----------------------------------------------------------------------------- damage

#: ``damage(image_dir, target)``: ``target`` is the format's hex file that the common damage hits
Damage = Callable[..., Any]


def _load(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _store(d: Path, man: Any) -> None:
    (d / "manifest.json").write_text(json.dumps(man))


def setk(*path_and_value) -> Damage:
    """Set the manifest value at ``path`` (keys and list indices) to ``value``."""
    *path, value = path_and_value

    def damage(d: Path, target: str = "") -> None:
        man = _load(d)
        obj = man
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value(d) if callable(value) else value
        _store(d, man)
    return damage


def delk(*path) -> Damage:
    def damage(d: Path, target: str = "") -> None:
        man = _load(d)
        obj = man
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
        _store(d, man)
    return damage


def mraw(data: str | bytes) -> Damage:
    def damage(d: Path, target: str = "") -> None:
        (d / "manifest.json").write_bytes(data.encode() if isinstance(data, str) else data)
    return damage


def duplicate_key(d: Path, target: str) -> None:
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text.replace("{", '{"layers": [], ', 1))


def hexlines(name: str | None, fn: Callable[[list[str]], Any]) -> Damage:
    """Edit the lines of hex file ``name`` (None: the format's common target)."""
    def damage(d: Path, target: str) -> None:
        p = d / (name or target)
        lines = p.read_text().splitlines()
        fn(lines)
        p.write_text("".join(s + "\n" for s in lines))
    return damage


def hexline(name: str | None, index: int, text: str) -> Damage:
    return hexlines(name, lambda ls: ls.__setitem__(index, text))


def hexraw(fn: Callable[[bytes], bytes]) -> Damage:
    def damage(d: Path, target: str) -> None:
        p = d / target
        p.write_bytes(fn(p.read_bytes()))
    return damage


def rm(name: str | None) -> Damage:
    def damage(d: Path, target: str) -> None:
        (d / (name or target)).unlink()
    return damage


def make_dir(name: str | None) -> Damage:
    def damage(d: Path, target: str) -> None:
        p = d / (name or target)
        p.unlink()
        p.mkdir()
    return damage


def link_out(name: str | None) -> Damage:
    """Move the file out of the image directory (intact) and leave a symlink to it."""
    def damage(d: Path, target: str) -> None:
        p = d / (name or target)
        outside = d.parent / f"outside_{p.name}"
        shutil.move(p, outside)
        p.symlink_to(outside)
    return damage


def link_loop(d: Path, target: str) -> None:
    (d / target).unlink()
    (d / target).symlink_to(target)


def apply(damage: Damage, d: Path, fmt: str) -> None:
    damage(d, FORMATS[fmt]["hex"])


def outside_copy(name: str) -> Callable[[Path], str]:
    """A value naming an intact copy of image file ``name`` outside the image directory."""
    def value(d: Path) -> str:
        dst = d.parent / "outside.hex"
        shutil.copy(d / name, dst)
        return str(dst)
    return value


# ----------------------------------------------------------------------------- the tables

#: (id, damage, message regex with {hex}, {lines}, {digits} for the format's target file)
COMMON = [
    ("manifest-is-a-list", mraw("[1, 2]"),
     r"manifest.json must hold a JSON object at the top level, got a list of 2 items"),
    ("manifest-is-a-string", mraw('"eie"'), r"top level, got the string 'eie'"),
    ("manifest-not-utf8", mraw(b'{\n "format": "\xff"\n}'),
     r"manifest.json line 2: byte 0xff is not UTF-8 text"),
    ("manifest-nested-deeply", mraw('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     r"manifest.json is not a valid manifest: its lists and objects nest too deeply"),
    ("manifest-not-json", mraw("{not json"),
     r"manifest.json is not valid JSON: .* at line 1 column 2"),
    ("manifest-empty", mraw(b""), r"manifest.json is not valid JSON"),
    ("manifest-integer-of-5000-digits", mraw('{"n": ' + "9" * 5000 + "}"),
     r"manifest.json is not valid JSON: Exceeds the limit \(4300 digits\) for integer string "
     r"conversion: value has 5000 digits;"),
    ("manifest-duplicate-key", duplicate_key,
     r"manifest.json is not a valid manifest: the key 'layers' appears twice in one object"),
    ("manifest-missing", lambda d, _: (d / "manifest.json").unlink(),
     r"manifest.json is missing"),
    ("manifest-is-a-directory", make_dir("manifest.json"), r"manifest.json is not a regular file"),
    ("manifest-symlink-outside", link_out("manifest.json"),
     r"manifest.json leads outside the image directory through a symlink"),
    ("layers-is-an-object", setk("layers", {}),
     r"'layers' must be a list of objects, got an object"),
    ("layer-is-a-list", setk("layers", 0, []), r"'layers\[0\]' must be an object, got a list"),
    ("layer-is-null", setk("layers", 1, None), r"'layers\[1\]' must be an object, got null"),
    ("stats-not-an-object", setk("layers", 0, "stats", [1]),
     r"'layers\[0\].stats' must be an object, got a list of 1 item"),
    ("hex-not-utf8", hexraw(lambda b: b"\n".join(
        ln + b"\xc3\x28" if i == 3 else ln for i, ln in enumerate(b.split(b"\n")))),
     r"{hex} line 4: byte 0xc3 is not UTF-8 text"),
    ("hex-bad-digit", hexline(None, 1, "xyz"), r"{hex} line 2: 'xyz' is not a hex word"),
    ("hex-0x-prefix", hexline(None, 0, "0x1"), r"{hex} line 1: '0x1' is not a hex word"),
    ("hex-negative", hexline(None, 0, "-1"), r"{hex} line 1: '-1' is not a hex word"),
    ("hex-underscore", hexline(None, 0, "0_0"), r"{hex} line 1: '0_0' is not a hex word"),
    ("hex-nul-byte", hexline(None, 2, "0\x00"), r"{hex} line 3: '0\\x00' is not a hex word"),
    ("hex-address-line", hexline(None, 0, "@0"), r"{hex} line 1: '@0' is an address line"),
    ("hex-too-many-digits", hexlines(None, lambda ls: ls.__setitem__(0, "0" + ls[0])),
     r"{hex} line 1: '0[0-9a-f]+' is not a hex word of at most {digits} digit"),
    ("hex-truncated", hexlines(None, lambda ls: ls.pop()),
     r"{hex} has {lines_1} values but .* {lines} \(the file ends early\)"),
    ("hex-extra-line", hexlines(None, lambda ls: ls.append("0")),
     r"{hex} has {lines1} values but .* {lines} \(line {lines1} holds value {lines1}, one too "
     r"many\)"),
    ("hex-empty", hexlines(None, lambda ls: ls.clear()), r"{hex} has 0 values"),
    ("hex-missing", rm(None), r"{hex} is missing from the image directory"),
    ("hex-is-a-directory", make_dir(None), r"{hex} is not a regular file"),
    ("hex-symlink-outside", link_out(None),
     r"{hex} leads outside the image directory through a symlink"),
    ("hex-symlink-loop", link_loop, r"{hex} cannot be resolved"),
]

EIE = [
    ("missing-key", delk("n_pe"), r"'n_pe' is missing \(expected an integer in \[1, 4096\]\)"),
    ("missing-layer-key", delk("layers", 1, "has_bias"),
     r"'layers\[1\].has_bias' is missing \(expected true or false\)"),
    ("number-as-string", setk("layers", 0, "n_in", "11"),
     r"'layers\[0\].n_in' must be an integer >= 1, got the string '11'"),
    ("float-for-integer", setk("acc_bits", 32.0),
     r"'acc_bits' must be an integer in \[16, 64\], got the number 32.0 \(written with a "
     r"decimal point\)"),
    ("fraction", setk("act_frac", 7.5), r"'act_frac' must be .*, got the number 7.5"),
    ("bool-for-integer", setk("n_pe", True), r"'n_pe' must be .*, got true"),
    ("null", setk("spmat_words", None), r"'spmat_words' must be an integer >= 0, got null"),
    ("negative", setk("spmat_words", -1), r"'spmat_words' must be an integer >= 0, got -1"),
    ("negative-base", setk("layers", 1, "ptr_base", -12),
     r"'layers\[1\].ptr_base' must be an integer >= 0, got -12"),
    ("too-many-pes", setk("n_pe", 5000), r"'n_pe' must be an integer in \[1, 4096\], got 5000"),
    ("huge-layer", setk("layers", 1, "n_out", 10**12),
     r"'layers\[1\].n_out' is 1000000000000 with n_in 9: .* more than the 1073741824"),
    ("huge-word-count", setk("spmat_words", 2**70),
     r"pe0_spmat.hex has \d+ values but the manifest's spmat_words is 1180591620717411303424"),
    ("integer-of-30-digits", setk("act_frac", 10**30),
     r"'act_frac' must be .*, got an integer of 31 digits"),
    ("codebook-item-string", setk("layers", 0, "codebook", 3, "7"),
     r"'layers\[0\].codebook' must be a list of 16 integers in \[-32768, 32767\], got a list of "
     r"16 items whose item 3 is the string '7'"),
    ("codebook-item-too-big", setk("layers", 0, "codebook", 3, 40000), r"whose item 3 is 40000"),
    ("codebook-too-short", setk("layers", 1, "codebook", [0] * 15),
     r"'layers\[1\].codebook' must be a list of 16 integers .*, got a list of 15 items"),
    ("relu-as-string", setk("layers", 0, "relu", "true"),
     r"'layers\[0\].relu' must be true or false, got the string 'true'"),
    ("relu-as-integer", setk("layers", 0, "relu", 1), r"'layers\[0\].relu' must be true or false"),
    ("row-order-out-of-range", setk("layers", 0, "row_order", 0, 99),
     r"'layers\[0\].row_order' must be a list of 9 integers in \[0, 8\], got a list of 9 items "
     r"whose item 0 is 99"),
    ("row-order-repeats", setk("layers", 0, "row_order", list(range(8)) + [0]),
     r"row_order must be a permutation of 0..8"),
    ("row-order-in-version-1", setk("format_version", 1),
     r"'layers\[0\].row_order' is there but format_version is 1"),
    ("ptr-words-as-string", setk("ptr_words", "22"),
     r"'ptr_words' must be an integer, got the string '22'"),
    ("ptr-words-wrong", setk("ptr_words", 21),
     r"'ptr_words' is 21 but the layers' pointers per PE \(n_in \+ 1 each\) are 22"),
    ("bias-words-wrong", setk("bias_words", 7),
     r"'bias_words' is 7 but the layers' bias slots per PE with n_pe=3 are 5"),
    ("format-is-bnn", setk("format", "eie-bnn-image"),
     r"'format' is the string 'eie-bnn-image', expected 'eie-image'; this is a BNN image: use "
     r"the `eie bnn` commands"),
    ("format-is-a-number", setk("format", 1), r"'format' is 1, expected 'eie-image'"),
    ("format-version-4", setk("format_version", 4),
     r"'format_version' is 4; this eie reads versions 1, 2, 3"),
    ("format-version-string", setk("format_version", "2"),
     r"'format_version' must be an integer, got the string '2'"),
    ("no-layers", setk("layers", []), r"'layers' is empty: the image has no layers"),
    ("layers-do-not-chain", setk("layers", 1, "n_in", 10),
     r"'layers\[1\].n_in' is 10: layer 1 takes 10 inputs but layer 0 gives 9 outputs"),
    ("base-off-contract", setk("layers", 1, "ptr_base", 0),
     r"is inconsistent: layer 1: ptr_base is 0 but the contract puts it at 12"),
    ("stats-disagree", setk("layers", 0, "stats", "entries_per_pe", 0, 999),
     r"'layers\[0\].stats.entries_per_pe' disagrees with the pe\*_ptr.hex/pe\*_spmat.hex files "
     r"\(PE 0 has \d+ in the files, 999 in the stats\)"),
    ("bias-word-too-wide", hexline("pe0_bias.hex", 0, "10000"),
     r"pe0_bias.hex line 1: '10000' is not a hex word of at most 4 digits"),
    ("spmat-word-too-wide", hexline("pe2_spmat.hex", 0, "1" * 17),
     r"pe2_spmat.hex line 1: '1{{17}}' is not a hex word of at most 16 digits"),
    ("bias-file-missing", rm("pe2_bias.hex"), r"pe2_bias.hex is missing from the image directory"),
    ("pointers-decrease", hexline("pe0_ptr.hex", 3, "00000000"), r"pointers decrease"),
]

BNN = [
    ("missing-key", delk("shape"),
     r"'shape' is missing \(expected a list of integers >= 1 \(at least 2\)\)"),
    ("missing-layer-key", delk("layers", 0, "simd"),
     r"'layers\[0\].simd' is missing \(expected an integer >= 1\)"),
    ("missing-weight-files", delk("layers", 1, "weight_files"),
     r"'layers\[1\].weight_files' is missing \(expected a list of strings\)"),
    ("missing-threshold-files", delk("layers", 0, "threshold_files"),
     r"'layers\[0\].threshold_files' is missing"),
    ("missing-format", delk("format"), r"'format' is missing \(expected a string\)"),
    ("number-as-string", setk("layers", 0, "simd", "4"),
     r"'layers\[0\].simd' must be an integer >= 1, got the string '4'"),
    ("version-as-string", setk("version", "1"),
     r"'version' must be an integer, got the string '1'"),
    ("float-for-integer", setk("layers", 0, "pe", 3.0),
     r"'layers\[0\].pe' must be an integer >= 1, got the number 3.0 \(written with a decimal "
     r"point\)"),
    ("bool-for-integer", setk("layers", 0, "pe", True), r"'layers\[0\].pe' must be .*, got true"),
    ("negative", setk("layers", 0, "pe", -3), r"'layers\[0\].pe' must be an integer >= 1, got -3"),
    ("zero-width", setk("shape", 1, 0),
     r"'shape' must be a list of integers >= 1 \(at least 2\), got a list of 3 items whose "
     r"item 1 is 0"),
    ("shape-too-short", setk("shape", [11]), r"'shape' must be a list .* got a list of 1 item;"),
    ("shape-as-string", setk("shape", "11,7,2"), r"'shape' .* got the string '11,7,2'"),
    ("huge-width", setk("shape", 1, 10**12),
     r"'layers\[0\].n_out' with the shape and folding gives \d+ weight bits .* more than the "
     r"1073741824"),
    ("simd-too-wide", setk("layers", 0, "simd", 10**6),
     r"manifest.json: layer 0: SIMD 1000000 does not fit a fan-in of 11"),
    ("layer-count", setk("layers", lambda d: _load(d)["layers"][:1]),
     r"'layers' lists 1 layer but 'shape' 11,7,2 has 2 layers"),
    ("n-in-disagrees", setk("layers", 0, "n_in", 12),
     r"'layers\[0\].n_in' is 12 but shape\[0\] is 11"),
    ("n-out-disagrees", setk("layers", 1, "n_out", 3),
     r"'layers\[1\].n_out' is 3 but shape\[2\] is 2"),
    ("sf-disagrees", setk("layers", 0, "sf", 4),
     r"'layers\[0\].sf' is 4 but ceil\(n_in / simd\) is 3"),
    ("nf-disagrees", setk("layers", 0, "nf", 1),
     r"'layers\[0\].nf' is 1 but ceil\(n_out / pe\) is 3"),
    ("ii-disagrees", setk("ii", 5), r"'ii' is 5 but the folding's largest nf \* sf is 9"),
    ("index-disagrees", setk("layers", 1, "index", 0), r"'layers\[1\].index' is 0 but its place"),
    ("threshold-width-disagrees", setk("layers", 0, "threshold_width", 3),
     r"'layers\[0\].threshold_width' is 3 but bit_length\(n_in \+ 1\) is 4"),
    ("hidden-disagrees", setk("layers", 1, "hidden", True),
     r"'layers\[1\].hidden' is true but layer 1 of 2 is the output layer"),
    ("hidden-as-string", setk("layers", 0, "hidden", "yes"),
     r"'layers\[0\].hidden' must be true or false, got the string 'yes'"),
    ("folding-disagrees", setk("folding", "4:3,7:1"),
     r"'folding' is '4:3,7:1' but the layers' simd and pe give '4:3,7:2'"),
    ("folding-garbage", setk("folding", "fast"), r"'folding' is 'fast' but"),
    ("format-is-eie", setk("format", "eie-image"),
     r"'format' is the string 'eie-image', expected 'eie-bnn-image'; this is an EIE image: use "
     r"`eie golden`"),
    ("version-6", setk("version", 6), r"'version' is 6; this eie reads versions 1, 2, 3, 4, 5"),
    ("weight-files-count", setk("layers", 0, "weight_files",
                                ["l0_pe0_w.hex", "l0_pe1_w.hex"]),
     r"'layers\[0\].weight_files' lists 2 files but layer 0 has 3 PEs"),
    ("weight-files-not-a-list", setk("layers", 0, "weight_files", "l0_pe0_w.hex"),
     r"'layers\[0\].weight_files' must be a list of strings, got the string 'l0_pe0_w.hex'"),
    ("thresholds-on-output-layer", setk("layers", 1, "threshold_files", ["l0_pe0_thr.hex"]),
     r"'layers\[1\].threshold_files' lists 1 file but layer 1 is the output layer, which has "
     r"no thresholds"),
    ("file-name-a-number", setk("layers", 0, "weight_files", 1, 7),
     r"'layers\[0\].weight_files' must be a list of strings, got a list of 3 items whose item 1 "
     r"is 7"),
    ("file-name-empty", setk("layers", 0, "weight_files", 1, ""),
     r"'layers\[0\].weight_files\[1\]' must be a file name, got the string ''"),
    ("file-name-dot", setk("layers", 0, "weight_files", 1, "."),
     r"'layers\[0\].weight_files\[1\]' is '.': it names the image directory itself"),
    ("file-name-dotdot", setk("layers", 0, "weight_files", 1, "../outside.hex"),
     r"'layers\[0\].weight_files\[1\]' is '../outside.hex': it leads out of the image "
     r"directory through '..'"),
    ("file-name-absolute", setk("layers", 0, "threshold_files", 2, outside_copy("l0_pe2_thr.hex")),
     r"'layers\[0\].threshold_files\[2\]' is '/.*outside.hex': an absolute path"),
    ("file-name-nul", setk("layers", 0, "weight_files", 0, "l0\x00.hex"),
     r"'layers\[0\].weight_files\[0\]' is 'l0\\x00.hex': not a file name"),
    ("file-name-missing", setk("layers", 1, "weight_files", 0, "nope.hex"),
     r"nope.hex is missing from the image directory \(it should hold layer 1, PE 0's weights\)"),
    ("threshold-too-big", hexline("l0_pe1_thr.hex", 0, "d"),
     r"l0_pe1_thr.hex: value 1 is 13, the threshold of layer 0 neuron 1; a threshold is at most "
     r"n_in \+ 1 = 12"),
    ("word-wider-than-simd", hexline("l1_pe0_w.hex", 0, "ff"),
     r"l1_pe0_w.hex line 1: ff is wider than 7 bits"),
    ("threshold-file-truncated", hexlines("l0_pe2_thr.hex", lambda ls: ls.pop()),
     r"l0_pe2_thr.hex has 2 values but layer 0's folding 4:3 needs nf = 3 \(the file ends "
     r"early\)"),
]

CASES = ([pytest.param(fmt, dmg, msg, id=f"{fmt}-{name}") for fmt in FORMATS
          for name, dmg, msg in COMMON]
         + [pytest.param("eie", dmg, msg, id=f"eie-{name}") for name, dmg, msg in EIE]
         + [pytest.param("bnn", dmg, msg, id=f"bnn-{name}") for name, dmg, msg in BNN])


def _expect(fmt: str, message: str) -> str:
    f = FORMATS[fmt]
    return message.format(hex=f["hex"].replace(".", r"\."), lines=f["lines"],
                          lines1=f["lines"] + 1, lines_1=f["lines"] - 1, digits=f["digits"])


def read_error(fmt: str, d: Path) -> str:
    """The one-line message of reading the damaged image ``d`` (any other exception fails)."""
    with pytest.raises(EieError) as info:
        FORMATS[fmt]["read"](d)
    assert type(info.value) is EieError
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    return msg


@pytest.mark.parametrize("fmt, damage, message", CASES)
def test_damaged_image_gives_one_clear_line(tmp_path, fmt, damage, message):
    d = FORMATS[fmt]["write"](tmp_path / "img")
    FORMATS[fmt]["read"](d)                                    # intact, it reads
    apply(damage, d, fmt)
    msg = read_error(fmt, d)
    assert re.search(_expect(fmt, message), msg), msg
    # what to do: every message about a damaged image ends with what to do
    if "manifest.json is missing" not in msg:
        assert "eie compress" in msg or "eie bnn" in msg or "eie golden" in msg, msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_or_non_directory(tmp_path, fmt):
    read = FORMATS[fmt]["read"]
    kind = "an EIE image" if fmt == "eie" else "a BNN image"
    with pytest.raises(EieError, match=f"nope is not {kind} directory: it does not exist; "
                                       f"create one with `eie"):
        read(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EieError, match=f"file is not {kind} directory: it is not a directory"):
        read(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EieError, match=f"empty is not {kind} directory: manifest.json is "
                                       f"missing"):
        read(tmp_path / "empty")


# ----------------------------------------------------------------------------- confinement

@pytest.mark.parametrize("name", [
    "../outside.hex", "sub/../../outside.hex", "ABSOLUTE", "link.hex", "sub_link/l0_pe1_w.hex",
])
def test_manifest_names_outside_the_directory_are_refused(tmp_path, name):
    """A manifest cannot make the reader open a file outside the image directory, even a valid
    one: no ``..``, no absolute path, no symlink (to a file or through a directory) leading out."""
    d = write_bnn(tmp_path / "img")
    shutil.copy(d / "l0_pe1_w.hex", tmp_path / "outside.hex")      # a valid word file outside
    (tmp_path / "out_dir").mkdir()
    shutil.copy(d / "l0_pe1_w.hex", tmp_path / "out_dir" / "l0_pe1_w.hex")
    (d / "sub").mkdir()
    (d / "link.hex").symlink_to(tmp_path / "outside.hex")
    (d / "sub_link").symlink_to(tmp_path / "out_dir")
    if name == "ABSOLUTE":
        name = str(tmp_path / "outside.hex")
    setk("layers", 0, "weight_files", 1, name)(d)
    msg = read_error("bnn", d)
    assert ("leads out of the image directory through '..'" in msg
            or "an absolute path" in msg
            or "leads outside the image directory through a symlink" in msg), msg


def test_names_inside_the_directory_are_accepted(tmp_path):
    """Relative names into a sub-directory and symlinks that stay inside are fine."""
    d = write_bnn(tmp_path / "img")
    want = bnn_image.read_image(d)
    (d / "sub").mkdir()
    shutil.move(d / "l0_pe1_w.hex", d / "sub" / "w1.hex")
    (d / "l0_pe2_w.link").symlink_to("sub/w1.hex")
    shutil.copy(d / "l0_pe2_w.hex", d / "sub" / "w2.hex")
    (d / "l0_pe2_w.hex").unlink()
    (d / "l0_pe2_w.link").unlink()
    (d / "l0_pe2_w.link").symlink_to("sub/w2.hex")
    setk("layers", 0, "weight_files", ["l0_pe0_w.hex", "sub/w1.hex", "l0_pe2_w.link"])(d)
    got = bnn_image.read_image(d)
    assert all(np.array_equal(a, b) for a, b in zip(got.weights, want.weights))
    assert all(np.array_equal(a, b) for a, b in zip(got.thresholds, want.thresholds))


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlinked_image_directory_is_fine(tmp_path, fmt):
    """The directory itself may be reached through a symlink: confinement is to where it is."""
    d = FORMATS[fmt]["write"](tmp_path / "img")
    (tmp_path / "alias").symlink_to(d)
    FORMATS[fmt]["read"](tmp_path / "alias")


# ----------------------------------------------------------------------------- fuzzing

POOL = [None, True, False, 0, -1, 1, 3, 2**40, -10**30, 1.5, 3.0, "", "4", "../x", "/etc/passwd",
        [], [0], [1, 2, 3], {}, {"a": 1}, "x" * 300]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            out += _paths(v, prefix + (i,))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzed_manifest_values(tmp_path, fmt):
    """Any manifest value replaced by any JSON value (or deleted): the image reads or the
    reader raises one EieError line, never another exception."""
    rng = random.Random(14 + len(fmt))
    d = FORMATS[fmt]["write"](tmp_path / "img")
    good = (d / "manifest.json").read_bytes()
    paths = _paths(json.loads(good))
    for _ in range(150):
        man = json.loads(good)
        for _ in range(rng.choice((1, 1, 2))):
            path = rng.choice(paths)
            obj = man
            try:
                for k in path[:-1]:
                    obj = obj[k]
                if rng.random() < 0.15 and isinstance(obj, dict):
                    del obj[path[-1]]
                else:
                    obj[path[-1]] = rng.choice(POOL)
            except (KeyError, IndexError, TypeError):
                pass                                  # an earlier edit removed the way there
        _store(d, man)
        try:
            FORMATS[fmt]["read"](d)
        except EieError as exc:
            assert "\n" not in str(exc), str(exc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzed_bytes(tmp_path, fmt):
    """Random bytes flipped, inserted or dropped in the manifest or a hex file: the image reads
    or the reader raises one EieError line."""
    rng = random.Random(17 + len(fmt))
    d = FORMATS[fmt]["write"](tmp_path / "img")
    files = sorted(p.name for p in d.iterdir() if p.suffix in (".json", ".hex"))
    originals = {n: (d / n).read_bytes() for n in files}
    for _ in range(200):
        name = rng.choice(["manifest.json", FORMATS[fmt]["hex"]] + files)
        data = bytearray(originals[name])
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4 and i < len(data):
                data[i] = rng.randrange(256)
            elif op < 0.7:
                data[i:i] = bytes([rng.choice(b"0123456789abcdef{}[]\",:-\n\xff\x00 @/.")])
            elif i < len(data):
                del data[i]
        (d / name).write_bytes(bytes(data))
        try:
            FORMATS[fmt]["read"](d)
        except EieError as exc:
            assert "\n" not in str(exc), str(exc)
        (d / name).write_bytes(originals[name])


# ----------------------------------------------------------------------------- hex words

@pytest.mark.parametrize("bits", [1, 3, 4, 7, 8, 16, 31, 32, 63, 64, 65, 130])
def test_hex_round_trip_at_every_width(bits):
    rng = np.random.default_rng(bits)
    top = (1 << bits) - 1
    values = [0, top] + [int.from_bytes(rng.bytes(17), "little") & top for _ in range(20)]
    text = imagefile.hex_text(values, bits)
    digits = max(1, -(-bits // 4))
    assert all(len(line) == digits for line in text.splitlines())
    assert text == "".join(f"{v:0{digits}x}\n" for v in values)
    assert imagefile.parse_hex(text, len(values), bits, where="f", needs="n") == values
    if bits % 4:
        with pytest.raises(EieError, match=f"f line 2: {top + 1:x} is wider than {bits} bits"):
            imagefile.parse_hex(f"0\n{top + 1:x}\n", 2, bits, where="f", needs="n")


def test_hex_signed_words():
    vals = np.array([-32768, -2, -1, 0, 1, 32767], dtype=np.int16)
    text = imagefile.hex_text(vals, 16, signed=True)
    assert text.split() == ["8000", "fffe", "ffff", "0000", "0001", "7fff"]
    assert imagefile.parse_hex(text, 6, 16, where="f", needs="n", signed=True) == vals.tolist()


@pytest.mark.parametrize("values, bits, signed, match", [
    ([16], 4, False, r"the value 16 does not fit an unsigned 4-bit word \[0, 15\]"),
    ([-1], 8, False, r"the value -1 does not fit an unsigned 8-bit word"),
    (np.array([40000]), 16, True, r"the value 40000 does not fit a signed 16-bit word "
                                  r"\[-32768, 32767\]"),
])
def test_hex_writer_refuses_values_that_do_not_fit(values, bits, signed, match):
    with pytest.raises(EieError, match=match):
        imagefile.hex_text(values, bits, signed=signed, name="x.hex")


def test_hex_comments_blank_lines_and_crlf():
    text = "// header\r\n\r\n0001 // one\r\n  0002\r\n\n"
    assert imagefile.parse_hex(text, 2, 16, where="f", needs="n") == [1, 2]


def test_bnn_writer_refuses_a_threshold_out_of_range(tmp_path):
    img = bnn_source()
    img.thresholds[0] = img.thresholds[0].copy()
    img.thresholds[0][4] = -1
    with pytest.raises(EieError, match=r"cannot write l0_pe1_thr.hex: the value -1 does not fit"):
        bnn_image.write_image(img, tmp_path / "img")
    assert list(tmp_path.iterdir()) == []


def test_both_readers_share_one_validator():
    """Neither image module parses hex or JSON itself: both go through eie.sw.imagefile."""
    for rel in ("sw/image.py", "sw/bnn/image.py"):
        tree = ast.parse((ROOT / rel).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").endswith("imagefile") for a in n.names}
        assert {"ImageDir", "write_hex"} <= imported, rel
        calls = {n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"loads", "read_text", "splitlines"}, (rel, calls)


def test_manifest_format(tmp_path):
    assert imagefile.manifest_format(write_eie(tmp_path / "e")) == "eie-image"
    assert imagefile.manifest_format(write_bnn(tmp_path / "b")) == "eie-bnn-image"
    mraw("[" * 100_000)(tmp_path / "b")
    with pytest.raises(EieError, match="nest too deeply"):
        imagefile.manifest_format(tmp_path / "b")


def test_image_kind_reads_the_manifest_through_the_validator(tmp_path):
    """eie.app.host.image_kind (eie build --image, eie board run) used to parse the manifest
    itself: a deeply nested one was a RecursionError, a non-UTF-8 one a UnicodeDecodeError."""
    from eie.app.host import image_kind

    assert image_kind(write_eie(tmp_path / "e")) == "eie"
    assert image_kind(write_bnn(tmp_path / "b")) == "bnn"
    for damage, message in ((setk("format", "other"), "unknown image format 'other'"),
                            (mraw("[" * 100_000), "nest too deeply"),
                            (mraw(b'{"format": "eie-\xff"}'), "byte 0xff is not UTF-8"),
                            (mraw("[1, 2]"), "must hold a JSON object")):
        damage(tmp_path / "b")
        with pytest.raises(EieError, match=re.escape(message)):
            image_kind(tmp_path / "b")
    with pytest.raises(EieError, match="it does not exist"):
        image_kind(tmp_path / "nope")


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_library_writers_replace_only_their_own_images(tmp_path, fmt):
    """write_image (library callers, not only `eie compress -o` / `eie bnn compile -o`) replaces
    a directory only when it is empty or an image of its own format with nothing else in it:
    before, the EIE writer only checked that a file named manifest.json existed and the BNN
    writer checked nothing."""
    write = FORMATS[fmt]["write"]
    other = "bnn" if fmt == "eie" else "eie"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "another program"}\n')
    (foreign / "data.txt").write_text("keep me\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    mine_plus = write(tmp_path / "mine_plus")
    (mine_plus / "notes.txt").write_text("mine\n")
    theirs = FORMATS[other]["write"](tmp_path / "theirs")
    a_file = tmp_path / "file.txt"
    a_file.write_text("a file\n")
    kind = "an EIE image" if fmt == "eie" else "a BNN image"
    for target, message in ((foreign, f"is not empty and is not {kind} written by eie"),
                            (user, f"is not empty and is not {kind} written by eie"),
                            (mine_plus, "also holds files it does not list (notes.txt)"),
                            (theirs, f"is not empty and is not {kind} written by eie"),
                            (a_file, "exists and is not a directory")):
        before = _tree(tmp_path)
        with pytest.raises(EieError, match=re.escape(message)):
            write(target)
        assert _tree(tmp_path) == before, target
    # its own image, an empty directory and a new path are replaced or written
    own = write(tmp_path / "own")
    (tmp_path / "empty").mkdir()
    for target in (own, tmp_path / "empty", tmp_path / "new" / "img"):
        write(target)
        FORMATS[fmt]["read"](target)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ----------------------------------------------------------------------------- through the CLI

#: (id, damage, message) for both formats
CLI_CASES = [
    ("not-utf8", mraw(b"\xff\xfe{}"), "manifest.json line 1: byte 0xff is not UTF-8"),
    ("nested", mraw("[" * 100_000), "nest too deeply"),
    ("list", mraw("[]"), "must hold a JSON object at the top level"),
    ("string-number", setk("layers", 0, "n_out", "9"), "got the string '9'"),
    ("truncated-hex", hexlines(None, lambda ls: ls.pop()), "(the file ends early)"),
    ("hex-symlink-outside", link_out(None), "leads outside the image directory through a symlink"),
]


def _run_clean_error(cli, argv, tmp_path, message, out: Path | None) -> None:
    r = cli(argv)
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eie: error: "), r.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in r.err and r.out == ""
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.mark.parametrize("command", ["golden", "inspect"])
@pytest.mark.parametrize("name, damage, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_eie_damaged_image(tmp_path, cli, command, name, damage, message):
    d = write_eie(tmp_path / "img")
    apply(damage, d, "eie")
    np.save(tmp_path / "x.npy", np.zeros((2, 11)))
    y = tmp_path / "y.npy"
    argv = (["golden", d, "--input", tmp_path / "x.npy", "-o", y] if command == "golden"
            else ["inspect", d])
    _run_clean_error(cli, argv, tmp_path, message, y if command == "golden" else None)


@pytest.mark.parametrize("name, damage, message", CLI_CASES + [
    ("dotdot", setk("layers", 0, "weight_files", 1, "../outside.hex"), "through '..'"),
    ("absolute", setk("layers", 0, "weight_files", 1, "/etc/passwd"), "an absolute path"),
    ("missing-key", delk("layers", 1, "pe"), "'layers[1].pe' is missing"),
], ids=[c[0] for c in CLI_CASES] + ["dotdot", "absolute", "missing-key"])
def test_cli_bnn_golden_damaged_image(tmp_path, cli, name, damage, message):
    d = write_bnn(tmp_path / "img")
    apply(damage, d, "bnn")
    np.save(tmp_path / "x.npy", np.zeros((2, 11), np.uint8))
    y = tmp_path / "y.npy"
    _run_clean_error(cli, ["bnn", "golden", d, "--input", tmp_path / "x.npy", "-o", y],
                     tmp_path, message, y)

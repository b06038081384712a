"""defmt frames decoded by our own decoder: a test encoder (defmt's wire format, version 4) writes
frames of every argument kind against a synthetic ``.defmt`` table, esp-println's framing wraps them
(0xFF 0x00, rzCOBS, 0x00), and the monitor's output stage must print each as its log line, whether
the bytes arrive whole or split, and go on past truncated and corrupt frames."""

from __future__ import annotations

import json
import struct

import pytest
from elfbuild import Sec, Sym, build_elf, esp_app_sections
from hypothesis import given
from hypothesis import strategies as st

from imgtool.decode.defmt import DefmtError, Entry, Table, decode_frame, parse_format
from imgtool.decode.esp_println import FrameSplitter, rzcobs_decode
from imgtool.device.monitor import AppOutput
from imgtool.errors import ElfError

# --------------------------------------------------------------------------- the test encoder


def rzcobs_encode(data: bytes) -> bytes:
    """rzCOBS as the rzcobs crate writes it: groups of seven slots with a bitmap of zeros, or runs of literals."""
    out = bytearray()
    run = zeros = 0
    for byte in data:
        if run < 7:
            if byte == 0:
                zeros |= 1 << run
            else:
                out.append(byte)
            run += 1
            if run == 7 and zeros:
                out.append(zeros)
                run = zeros = 0
        elif byte == 0:
            out.append(0x80 | (run - 7))
            run = zeros = 0
        else:
            out.append(byte)
            run += 1
            if run == 134:
                out.append(0xFF)
                run = zeros = 0
    if 0 < run < 7:
        out.append((zeros | (0xFF << run)) & 0x7F)
    elif run >= 7:
        out.append(0x80 | (run - 7))
    return bytes(out)


def wire(frame: bytes) -> bytes:
    """One frame as esp-println's defmt-espflash sends it."""
    return b"\xff\x00" + rzcobs_encode(frame) + b"\x00"


def u16(v):
    return struct.pack("<H", v)


def length(n):
    return struct.pack("<I", n)


ENTRIES = {
    1: ("defmt_prim", "{=u8}"),
    3: ("defmt_info", "x={=u8} y={=u16:#x} z={=i32} big={=u128} neg={=i64} sz={=usize} isz={=isize} w={=u32:08x}"),
    4: ("defmt_warn", "f={=f32} d={=f64} b={=bool} c={=bool} ch={=char}"),
    5: ("defmt_error", "s={=str} i={=istr} {{literal}}"),
    6: ("defmt_str", "interned!"),
    7: ("defmt_debug", "bytes={=[u8]:x} arr={=[u8; 3]} fs={=[?]} fa={=[?; 2]}"),
    8: ("defmt_derived", "Point {{ x: {=i32}, y: {=i32} }}"),
    9: ("defmt_derived", "None|Some({=?})"),
    10: ("defmt_trace", "p={} o={=?} dbg={=__internal_Debug} disp={=__internal_Display}"),
    11: ("defmt_info", "bits {0=0..4:b} {0=4..8} {1=8..16}"),
    12: ("defmt_println", "plain {=u8}"),
    13: ("defmt_info", "nested {}"),
    14: ("defmt_derived", "Line {{ a: {=?}, b: {=?} }}"),
    15: ("defmt_info", "seq {=__internal_FormatSequence}"),
}
TIMESTAMP = ("defmt_timestamp", "{=u64:us}")
TS = struct.pack("<Q", 1_234_567)  # 1.234567 s


def table() -> Table:
    return Table({i: Entry(tag, text) for i, (tag, text) in ENTRIES.items()}, timestamp=Entry(*TIMESTAMP))


def point(x, y):
    return struct.pack("<ii", x, y)


#: (frame bytes, the line it must print), one per argument kind the issue lists.
FRAMES = [
    (
        u16(3) + TS + bytes([7]) + u16(0xBEEF) + struct.pack("<i", -5) + (2**100).to_bytes(16, "little")
        + struct.pack("<q", -(2**40)) + struct.pack("<I", 4_000_000_000) + struct.pack("<i", -7) + struct.pack("<I", 0xAB),
        f"1.234567 INFO  x=7 y=0xbeef z=-5 big={2**100} neg={-(2**40)} sz=4000000000 isz=-7 w=000000ab",
    ),
    (
        u16(4) + TS + struct.pack("<f", 1.5) + struct.pack("<d", -0.1) + b"\x01\x00" + struct.pack("<I", ord("é")),
        "1.234567 WARN  f=1.5 d=-0.1 b=true c=false ch=é",
    ),
    (u16(5) + TS + length(5) + "héllo".encode()[:5] + u16(6), None),  # fixed below (UTF-8 length)
    (
        u16(7) + TS + length(3) + b"\x01\x0a\xff" + b"\x01\x02\x03" + length(2) + u16(8) + point(1, 2) + point(3, 4)
        + u16(9) + b"\x01" + u16(1) + b"\x05" + b"\x00",
        "1.234567 DEBUG bytes=[1, a, ff] arr=[1, 2, 3] fs=[Point { x: 1, y: 2 }, Point { x: 3, y: 4 }] fa=[Some(5), None]",
    ),
    (
        u16(10) + TS + u16(8) + point(-1, 0) + u16(9) + b"\x00" + b"Foo { a: 1 }\xff" + b"shown\xff",
        "1.234567 TRACE p=Point { x: -1, y: 0 } o=None dbg=Foo { a: 1 } disp=shown",
    ),
    (u16(11) + TS + bytes([0b1010_0110]) + bytes([0x42]), "1.234567 INFO  bits 110 10 66"),
    (u16(12) + bytes([9]), "plain 9"),  # println: no level, no timestamp
    (
        u16(13) + TS + u16(14) + u16(8) + point(5, 6) + u16(9) + b"\x01" + u16(8) + point(7, 8),
        "1.234567 INFO  nested Line { a: Point { x: 5, y: 6 }, b: Some(Point { x: 7, y: 8 }) }",
    ),
    (u16(15) + TS + u16(1) + b"\x01" + u16(8) + point(0, 1) + u16(0), "1.234567 INFO  seq 1Point { x: 0, y: 1 }"),
]
_S = "héllo".encode()
FRAMES[2] = (u16(5) + TS + length(len(_S)) + _S + u16(6), "1.234567 ERROR s=héllo i=interned! {literal}")


@pytest.mark.parametrize("frame, line", FRAMES, ids=[ENTRIES[struct.unpack("<H", f[:2])[0]][1][:12] for f, _ in FRAMES])
def test_every_argument_kind_decodes(frame, line):
    assert decode_frame(table(), frame).render() == line


def test_format_strings_parse_escapes_positions_and_hints():
    parts = parse_format("a {{b}} {=u8:x} {} {2=0..4:b}")
    assert parts[0] == "a {b} "
    params = [p for p in parts if not isinstance(p, str)]
    assert [(p.index, p.type, p.hint) for p in params] == [(0, "u8", "x"), (1, "?", ""), (2, "0..4", "b")]


def stream() -> bytes:
    return b"boot text\r\n" + b"".join(wire(f) for f, _ in FRAMES) + b"after\n"


def expected_output() -> bytes:
    return b"boot text\r\n" + b"".join(line.encode() + b"\n" for _, line in FRAMES) + b"after\n"


def test_frames_between_text_print_as_log_lines():
    assert AppOutput(defmt_table=table()).feed(stream()) == expected_output()


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_frames_split_across_reads_print_the_same(cuts):
    data, out, pos = stream(), bytearray(), 0
    output = AppOutput(defmt_table=table())
    for size in cuts * (len(data) // sum(cuts) + 1):
        out += output.feed(data[pos : pos + size])
        pos += size
        if pos >= len(data):
            break
    assert bytes(out) == expected_output()


def test_a_truncated_frame_is_reported_and_the_next_one_decodes():
    """The device reset in the middle of a frame: the next frame's start marker cuts it short."""
    first, second = FRAMES[0][0], FRAMES[6]
    data = b"\xff\x00" + rzcobs_encode(first)[:5] + wire(second[0]) + b"tail\n"
    out = AppOutput(defmt_table=table()).feed(data).decode()
    lines = out.splitlines()
    assert "cut short" in lines[0] and lines[1] == second[1] and lines[2] == "tail"


@pytest.mark.parametrize(
    "frame, why",
    [
        (u16(99) + TS, "index 99 is not in the ELF's defmt table"),
        (u16(8) + TS, "defmt_derived string, not a log statement"),
        (FRAMES[0][0][:-3], "truncated"),
        (u16(4) + TS + struct.pack("<f", 1.5) + struct.pack("<d", 1.0) + b"\x02\x00" + struct.pack("<I", 65), "is not a bool"),
        (u16(12) + b"\x01\x07", "left over"),
    ],
)
def test_a_corrupt_frame_is_shown_as_such_and_decoding_goes_on(frame, why):
    out = AppOutput(defmt_table=table()).feed(b"before " + wire(frame) + wire(FRAMES[6][0])).decode()
    text, first, second = out.splitlines()  # the frame's line starts a line of its own
    assert text == "before " and first.startswith("[defmt: cannot decode a frame") and why in first, first
    assert second == "plain 9"
    with pytest.raises(DefmtError, match=why):
        decode_frame(table(), frame)


def test_bytes_that_only_look_like_markers_stay_text():
    output = AppOutput(defmt_table=table())
    assert output.feed(b"ends with \xff") == b"ends with "  # the 0xFF may start a frame: held back
    assert output.feed(b"not a frame\n") == b"\xffnot a frame\n"


@given(st.binary(max_size=600))
def test_rzcobs_round_trip(data):
    encoded = rzcobs_encode(data)
    assert 0 not in encoded
    decoded = rzcobs_decode(encoded)
    assert decoded[: len(data)] == data and not any(decoded[len(data) :])  # only zero padding after


def test_splitter_bounds_a_frame_that_never_ends():
    from imgtool.decode.esp_println import MAX_FRAME

    pieces = list(FrameSplitter().feed(b"\xff\x00" + b"\x01" * (MAX_FRAME + 1)))
    assert pieces == [("lost", b"\x01" * (MAX_FRAME + 1))]


# --------------------------------------------------------------------------- the table from an ELF


def defmt_elf(path, *, version="4", entries=ENTRIES, dwarf=()):
    symbols = [Sym(json.dumps({"package": "app", "tag": tag, "data": text, "disambiguator": str(i), "crate_name": "app"}),
                   value=i, section=".defmt") for i, (tag, text) in entries.items()]  # fmt: skip
    symbols.append(Sym(json.dumps({"package": "app", "tag": TIMESTAMP[0], "data": TIMESTAMP[1], "disambiguator": "0"}), value=100, section=".defmt"))
    symbols += [Sym(f"_defmt_version_ = {version}"), Sym("_defmt_encoding_ = rzcobs")]
    sections = [*esp_app_sections("esp32c6"), Sec(".defmt", 0, size=0x200, flags="", type="NOBITS"), *dwarf]
    path.write_bytes(build_elf(sections, symbols=symbols, entry=0x4200_0400))
    return path


def test_table_is_read_from_the_defmt_symbols(tmp_path):
    read = Table.from_elf(defmt_elf(tmp_path / "app.elf"))
    assert read.entries[3] == Entry(*ENTRIES[3]) and read.timestamp == Entry(*TIMESTAMP)
    assert decode_frame(read, FRAMES[0][0]).render() == FRAMES[0][1]


def test_an_elf_without_defmt_has_no_table(tmp_path):
    path = tmp_path / "plain.elf"
    path.write_bytes(build_elf(esp_app_sections("esp32c6"), symbols=["esp32c6.0123456789abcdef-cgu.0"]))
    assert Table.from_elf(path) is None


def test_an_unknown_wire_format_version_is_refused_in_one_line(tmp_path):
    with pytest.raises(ElfError, match="uses defmt wire format version 5; imgtool decodes versions 3, 4"):
        Table.from_elf(defmt_elf(tmp_path / "app.elf", version="5"))


def log_statement_dwarf(index: int, line: int) -> list[Sec]:
    """The smallest DWARF 4 defmt leaves for one log statement: a unit, a namespace ``app`` and the
    ``DEFMT_LOG_STATEMENT`` variable at the statement's index, declared in src/main.rs at ``line``."""
    DW_FORM_string, DW_FORM_data1, DW_FORM_sec_offset, DW_FORM_exprloc = 0x08, 0x0B, 0x17, 0x18
    abbrev = bytes([
        1, 0x11, 1, 0x03, DW_FORM_string, 0x10, DW_FORM_sec_offset, 0, 0,  # compile unit: name, stmt_list
        2, 0x39, 1, 0x03, DW_FORM_string, 0, 0,  # namespace: name
        3, 0x34, 0, 0x03, DW_FORM_string, 0x3A, DW_FORM_data1, 0x3B, DW_FORM_data1, 0x02, DW_FORM_exprloc, 0, 0,  # variable
        0,
    ])  # fmt: skip
    body = (
        b"\x01app.rs\0" + struct.pack("<I", 0)
        + b"\x02app\0"
        + b"\x03DEFMT_LOG_STATEMENT\0" + bytes([1, line, 5, 0x03]) + struct.pack("<I", index)
        + b"\0\0"
    )  # fmt: skip
    info = struct.pack("<IHIB", len(body) + 7, 4, 0, 4) + body
    header = bytes([1, 1, 1, 0xFB, 14, 13, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1]) + b"src\0\0" + b"main.rs\0\x01\x00\x00\0"
    lines = struct.pack("<IHI", 2 + 4 + len(header), 4, len(header)) + header
    return [Sec(".debug_abbrev", 0, abbrev, flags=""), Sec(".debug_info", 0, info, flags=""), Sec(".debug_line", 0, lines, flags="")]


def test_a_log_lines_location_comes_from_its_dwarf_variable(tmp_path):
    path = defmt_elf(tmp_path / "app.elf", dwarf=log_statement_dwarf(12, 42))
    read = Table.from_elf(path)
    assert decode_frame(read, u16(12) + b"\x09").render() == "plain 9\n└─ app @ src/main.rs:42"


@given(st.binary(max_size=200))
def test_any_frame_decodes_or_is_refused_in_one_error(data):
    try:
        frame = decode_frame(table(), data)
    except DefmtError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
    else:
        assert isinstance(frame.render(), str)


@given(st.lists(st.sampled_from([b"\xff", b"\x00", b"\xff\x00", b"\x01", b"text\n", b"0x42001a26\n"]) | st.binary(max_size=20), max_size=30))
def test_any_byte_stream_prints_the_same_however_it_arrives(pieces):
    """Never raises, and reads split anywhere print what the whole stream read at once prints."""
    output = AppOutput(defmt_table=table())
    in_pieces = b"".join(output.feed(piece) for piece in pieces)
    assert in_pieces == AppOutput(defmt_table=table()).feed(b"".join(pieces))

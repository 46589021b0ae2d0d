"""The generic SCPI layer: mnemonics, compound messages, common commands, the error queue."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.instruments.emulator.scpi import (
    ERROR_QUEUE_LENGTH,
    Instrument,
    ScpiError,
    encode_block,
    expect,
    split_message,
)


class Toy(Instrument):
    """A tiny instrument: one value, one block echo."""

    def __init__(self):
        super().__init__()
        self.value = 0.0
        self.command("SOURce:VOLTage[:LEVel]", write=self._set, query=lambda p: f"{self.value:g}")
        self.command("SOURce:CURRent", write=self._set, query=lambda p: "cur")
        self.command("DATA:ECHO", query=self._echo, block_reply=True)

    def idn(self):
        return "toy,1,2,3"

    def reset(self):
        self.value = 0.0

    def _set(self, p):
        (v,) = expect(p, 1, "SOUR:VOLT")
        self.value = v.number(lo=-10, hi=10)

    def _echo(self, p):
        (b,) = expect(p, 1, "DATA:ECHO?")
        return encode_block(b.array("<f4") * 2)


def ask(inst, text: str | bytes) -> bytes:
    return inst.handle(text.encode() if isinstance(text, str) else text)


def errors(inst) -> list[int]:
    out = []
    while True:
        code = int(ask(inst, "SYST:ERR?").split(b",")[0])
        if code == 0:
            return out
        out.append(code)


@pytest.mark.parametrize("header", ["SOUR:VOLT", "source:voltage", "SoUrCe:VoLt:LEV",
                                    ":SOURCE:VOLTAGE:LEVEL", "sour:volt:level"])
def test_short_long_case_insensitive_optional_nodes(header):
    t = Toy()
    ask(t, f"{header} 1.5")
    assert ask(t, "SOUR:VOLT?") == b"1.5\n"
    assert errors(t) == []


def test_partial_mnemonic_is_undefined_header():
    t = Toy()
    ask(t, "SOURC:VOLT 1")
    assert errors(t) == [-113]


def test_compound_message_relative_path_and_responses_joined():
    t = Toy()
    # "CURR?" continues in SOURce (SCPI-99 6.2.4); common commands do not change the path
    assert ask(t, "SOUR:VOLT 2;CURR?;*IDN?;:SOUR:VOLT?") == b"cur;toy,1,2,3;2\n"
    assert errors(t) == []


def test_common_commands_and_status():
    t = Toy()
    assert ask(t, "*IDN?") == b"toy,1,2,3\n"
    assert ask(t, "*OPC?") == b"1\n"
    ask(t, "SOUR:VOLT 3")
    ask(t, "*RST")
    assert ask(t, "SOUR:VOLT?") == b"0\n"
    ask(t, "BOGUS")  # command error -> ESR bit 5, error queue bit in STB
    assert int(ask(t, "*STB?")) & 4
    assert int(ask(t, "*ESR?")) & 32
    assert int(ask(t, "*ESR?")) == 0  # reading clears it
    ask(t, "*CLS")
    assert int(ask(t, "*STB?")) == 0
    assert ask(t, "SYST:ERR:NEXT?") == b'0,"No error"\n'
    ask(t, "*ESE 32;*SRE 32")
    assert ask(t, "*ESE?;*SRE?") == b"32;32\n"
    assert ask(t, "*WAI;*OPC;*ESR?") == b"1\n"


@pytest.mark.parametrize(
    "message, code",
    [
        ("NOPE:NOPE 1", -113),          # undefined header
        ("SOUR:VOLT", -109),            # missing parameter
        ("SOUR:VOLT 1,2", -108),        # parameter not allowed
        ("SOUR:VOLT abc", -104),        # data type error
        ("SOUR:VOLT 99", -222),         # data out of range
        ("SOUR:VOLT #14abcd", -104),    # a block where a number belongs
        ("SOUR::VOLT 1", -102),         # syntax error
        ("SOUR:VOLT 1 2", -102),        # syntax error (space inside a parameter)
        ("DATA:ECHO? #0abc", -161),     # indefinite-length block: not supported
        ("DATA:ECHO? #x", -161),        # malformed block header
        ("DATA:ECHO? #18abc", -160),    # block shorter than its header
        ("DATA:ECHO? #13abc", -161),    # 3 bytes is not whole float32 values
        ("*IDN? 1", -108),
        ("DATA:ECHO #14abcd", -100),     # the header exists as a query only
    ],
)
def test_error_codes(message, code):
    t = Toy()
    ask(t, message)
    assert errors(t) == [code]


def test_error_message_names_the_command():
    t = Toy()
    ask(t, "SOUR:VOLT 99")
    reply = ask(t, "SYST:ERR?").decode()
    assert reply.startswith('-222,"Data out of range;')
    assert "SOUR:VOLT" in reply


def test_command_error_discards_rest_of_message_execution_error_does_not():
    t = Toy()
    assert ask(t, "BOGUS;*IDN?") == b""
    assert errors(t) == [-113]
    assert ask(t, "SOUR:VOLT 99;*IDN?") == b"toy,1,2,3\n"
    assert errors(t) == [-222]


def test_error_queue_overflow():
    t = Toy()
    for _ in range(ERROR_QUEUE_LENGTH + 5):
        ask(t, "BOGUS")
    codes = errors(t)
    assert len(codes) == ERROR_QUEUE_LENGTH
    assert codes[-1] == -350 and set(codes[:-1]) == {-113}


def test_handler_exception_is_execution_error_not_a_hang():
    t = Toy()

    def broken(p):
        raise ValueError("physics says no")

    t.command("DATA:BROKen", query=broken, block_reply=True)
    assert ask(t, "DATA:BROK?") == b"#10\n"
    reply = ask(t, "SYST:ERR?").decode()
    assert reply.startswith("-200,") and "physics says no" in reply


def test_failed_block_query_answers_empty_block():
    t = Toy()
    assert ask(t, "DATA:ECHO? 5") == b"#10\n"
    assert errors(t) == [-104]
    assert ask(t, "DATA:ECHO? #0abc") == b"#10\n"  # even when the block cannot be parsed
    assert errors(t) == [-161]


def test_block_with_newlines_and_quotes_inside():
    t = Toy()
    values = np.frombuffer(b"\n\n\n\n'''\"#\n;,", dtype="<f4")  # 12 bytes of awkward data
    msg = b"DATA:ECHO? " + encode_block(values)
    end, _ = split_message(msg + b"\n")
    assert end == len(msg) + 1  # the newlines inside the block do not end the message
    reply = ask(t, msg)
    out = np.frombuffer(reply[2 + int(reply[1:2]) : -1], dtype="<f4")
    np.testing.assert_array_equal(out, values * 2)


def test_split_message_waits_for_whole_block():
    data = b"DATA:ECHO? #18abc"
    assert split_message(data) == (-1, len(data) + 5 + 1)
    assert split_message(b"*IDN?") == (-1, 6)
    assert split_message(b"*IDN?\n*OPC?\n") == (6, 0)


def test_ambiguous_mnemonic_registration_is_refused():
    t = Toy()
    with pytest.raises(ValueError, match="ambiguous"):
        t.command("SOURce:VOLTs", query=lambda p: "x")


def test_scpi_error_carries_code():
    e = ScpiError(-222, "x")
    assert e.code == -222 and "Data out of range" in str(e)


@pytest.mark.parametrize("text,code", [
    ("1e400", -123), ("7" * 5000, -124), ("-1e999", -123), ("1" + "0" * 400, -124),
])
def test_absurd_numbers_are_scpi_errors_not_exceptions(text, code):
    t = Toy()
    ask(t, f"SOUR:VOLT {text}")
    assert errors(t) == [code]
    assert t.value == 0.0


def test_long_parameters_are_not_echoed_whole_into_the_error_queue():
    t = Toy()
    ask(t, "SOUR:" + "X" * 100_000)  # an undefined header is echoed in the error text
    reply = ask(t, "SYST:ERR?")
    assert reply.startswith(b"-113,") and len(reply) < 400
    assert len(t.log[-2]) < 2000

"""Emulator abuse: huge counts, long lines, garbage bytes, abrupt disconnects, many
connections. The server answers with an SCPI error, never buffers more than its documented
maximum message size, never prints a traceback, and keeps serving."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct

import numpy as np
import pytest

from cimlab.instruments.emulator import EmulatedBench
from cimlab.instruments.emulator.scpi import MAX_MESSAGE_BYTES
from cimlab.instruments.emulator.server import MAX_CONNECTIONS

SEED = 11


@pytest.fixture(scope="module")
def bench():
    from cimlab.physics import load_profile
    from cimlab.physics.profile import Geometry

    profile = dataclasses.replace(load_profile("default"), geometry=Geometry(n_tiles=1))
    with EmulatedBench(profile, SEED) as b:
        yield b


@pytest.fixture
def no_tracebacks(caplog):
    """Fails the test if the server logged an error (its catch-all for emulator bugs)."""
    with caplog.at_level(logging.ERROR, logger="cimlab.instruments.emulator.server"):
        yield
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records]


def _addr(bench) -> tuple[str, int]:
    _, host, port, _ = bench.addresses["array"].split("::")
    return host, int(port)


def _connect(bench, timeout_s: float = 5.0) -> socket.socket:
    s = socket.create_connection(_addr(bench), timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _line(s: socket.socket) -> bytes:
    out = bytearray()
    while not out.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        out.extend(chunk)
    return bytes(out)


def _ask(s: socket.socket, text: bytes) -> bytes:
    s.sendall(text + b"\n")
    return _line(s)


def _errors(s: socket.socket) -> list[int]:
    reply = _ask(s, b"SYST:ERR:ALL?").decode()
    return [int(x) for x in reply.split(",")[::2] if x.strip().lstrip("-").isdigit()]


def _alive(s: socket.socket) -> bool:
    return _ask(s, b"*IDN?").startswith(b"cimlab,")


def test_huge_declared_block_is_refused_without_waiting(bench, no_tracebacks, tally):
    tally.tried("emulator")
    with _connect(bench) as s:
        # 21 bytes that used to make the server wait for (and allocate) 1 GB
        assert _ask(s, b"ARR:READ? #9999999999") == b"#10\n"
        assert -223 in _errors(s)
        assert _alive(s)
    tally.handled("emulator")


def test_line_longer_than_the_maximum_is_skipped_not_buffered(bench, no_tracebacks, tally):
    tally.tried("emulator")
    with _connect(bench, timeout_s=30) as s:
        s.sendall(b"ARR:VRE " + b"1" * (MAX_MESSAGE_BYTES + (1 << 20)))
        s.sendall(b"\n")
        assert _errors(s) == [-223]
        assert _alive(s)
    tally.handled("emulator")


@pytest.mark.parametrize("command,code", [
    (b"ROUT:CELL 1e400", -123),
    (b"ROUT:CELL " + b"7" * 5000, -124),
    (b"ARR:VRE " + b"9" * 5000, -124),
    (b"ARR:VRE 1e400", -123),
    (b"ROUT:CELL 1e300", -222),
    (b"ARR:VRE NAN", -222),
])
def test_absurd_numbers_are_scpi_errors(bench, no_tracebacks, tally, command, code):
    tally.tried("emulator")
    with _connect(bench) as s:
        s.sendall(command + b"\n")
        assert _errors(s) == [code]
        assert _alive(s)
    tally.handled("emulator")


def test_cell_lists_are_bounded_by_the_chip(bench, no_tracebacks, tally):
    n_cells = int(np.prod(bench.chip.geometry))
    cases = [
        struct.pack("<I", n_cells),  # one past the last cell
        struct.pack("<I", 0xFFFFFFFF),
        b"\x00\x00\x00",  # not a whole uint32
        b"",  # empty list
    ]
    with _connect(bench) as s:
        _ask(s, b"OUTP ON;*OPC?")
        for raw in cases:
            tally.tried("emulator")
            head = f"#{len(str(len(raw)))}{len(raw)}".encode() if raw else b"#10"
            assert _ask(s, b"ARR:READ? " + head + raw) == b"#10\n"
            assert _errors(s) and _alive(s)
            tally.handled("emulator")
        _ask(s, b"OUTP OFF;*OPC?")


def test_garbage_and_mutated_commands_keep_the_server_serving(bench, no_tracebacks, tally):
    rng = np.random.default_rng(SEED)
    valid = [b"ARR:VRE 0.2", b"ROUT:CELL 5", b"ARR:GEOM?", b"OUTP OFF", b"*IDN?",
             b"ARR:READ? #14\x01\x00\x00\x00", b"SYST:ERR?", b"ARR:MVM? 0,#18" + b"\x00" * 8]
    with _connect(bench) as s:
        for k in range(300):
            tally.tried("emulator")
            if k % 3 == 0:  # random bytes, no newline inside
                msg = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
                msg = msg.replace(b"\n", b" ")
            else:  # a valid command with bytes flipped, inserted or cut
                msg = bytearray(valid[int(rng.integers(len(valid)))])
                for _ in range(int(rng.integers(1, 4))):
                    i = int(rng.integers(len(msg) + 1))
                    op = rng.integers(3)
                    if op == 0 and i < len(msg):
                        msg[i] = int(rng.integers(0, 256))
                    elif op == 1:
                        msg[i:i] = rng.choice([b"#", b"#9", b"'", b";", b",", b"1e999", b"?"])
                    else:
                        del msg[i:]
                msg = bytes(msg).replace(b"\n", b" ")
            # an unterminated block or string may swallow the terminator: close it, then ask
            s.sendall(msg + b"\n")
            s.sendall(b"'\"\n")
            s.settimeout(5)
            s.sendall(b"*CLS\n")
            # drain whatever the mutated message answered, until the IDN comes back
            s.sendall(b"*IDN?\n")
            buf = bytearray()
            while b"cimlab," not in buf:
                chunk = s.recv(65536)
                assert chunk, "server closed the connection"
                buf.extend(chunk)
            tally.handled("emulator")


def test_abrupt_disconnects_mid_block(bench, no_tracebacks, tally):
    for k in range(20):
        tally.tried("emulator")
        s = _connect(bench)
        s.sendall(b"ARR:READ? #6100000" + b"\x00" * (k * 1000))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
        with _connect(bench) as t:
            assert _alive(t)
        tally.handled("emulator")


def test_100_connections_capped_with_a_clear_refusal(bench, no_tracebacks, tally):
    socks = []
    try:
        for _ in range(100):
            tally.tried("emulator")
            socks.append(_connect(bench))
        replies = [_ask(s, b"*IDN?") for s in socks]
        served = [r for r in replies if r.startswith(b"cimlab,")]
        refused = [r for r in replies if r.startswith(b"-310,") and b"too many connections" in r]
        assert len(served) == MAX_CONNECTIONS
        assert len(refused) == 100 - MAX_CONNECTIONS
        for _ in replies:
            tally.handled("emulator")
    finally:
        for s in socks:
            s.close()
    # the slots are given back: a new client is served
    for _ in range(50):
        with _connect(bench) as s:
            if _alive(s):
                break
    else:
        pytest.fail("no connection served after the others closed")

"""Several addresses for one role: ``address = [...]`` or ``alternatives``, tried in order
(the first that answers ``*IDN?`` is used); a malformed list is one ConfigError line naming
the file, the field and what was expected."""

from __future__ import annotations

import logging
import socket

import pytest

from cimlab.errors import ConfigError, InstrumentError
from cimlab.instruments.station import Station
from cimlab.instruments.station_config import load_station_config
from tests.procedures.bench_util import station_file


def _dead_address() -> str:
    """A loopback TCP port nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"TCPIP0::127.0.0.1::{port}::SOCKET"


def _with_smu(tmp_path, smu_table: str):
    p = station_file(tmp_path, seed=1)
    text = p.read_text().replace('[instruments.smu]\naddress = "emulator"',
                                 f"[instruments.smu]\n{smu_table}")
    assert text != p.read_text()
    p.write_text(text)
    return p


def test_list_of_addresses_first_answering_is_used(tmp_path, caplog):
    dead = _dead_address()
    p = _with_smu(tmp_path, f'address = ["{dead}", "emulator"]\ntimeout_s = 2.0')
    cfg, _ = load_station_config(p)
    assert cfg.instruments.smu.address == dead
    assert cfg.instruments.smu.alternatives == ("emulator",)
    with caplog.at_level(logging.INFO, logger="cimlab.instruments.station"), \
            Station.open(p) as st:
        assert st.addresses["smu"] != dead and st.addresses["smu"].endswith("::SOCKET")
        assert "2450" in st.idn["smu"]
        assert st.snapshot()["addresses"]["smu"] == st.addresses["smu"]
        st.smu.source_voltage = 0.1  # the opened SMU works, limit-checked as ever
        with pytest.raises(Exception, match="smu_v_max_v"):
            st.smu.source_voltage = 2.0
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("answered at alternative" in r.getMessage() and dead in r.getMessage()
               for r in warned)


def test_alternatives_field_and_none_answering(tmp_path):
    dead1, dead2 = _dead_address(), _dead_address()
    p = _with_smu(tmp_path, f'address = "{dead1}"\nalternatives = ["{dead2}"]\n'
                  "timeout_s = 2.0")
    with pytest.raises(InstrumentError) as err:
        Station.open(p)
    msg = str(err.value)
    assert "instruments.smu: none of its 2 addresses" in msg
    assert dead1 in msg and dead2 in msg and "\n" not in msg


@pytest.mark.parametrize(("table", "field", "expected"), [
    ("address = []", "instruments.smu.address", "non-empty list"),
    ('address = ["emulator", 5]', "instruments.smu.address", "non-empty list"),
    ('address = "emulator"\nalternatives = ["emulator"]', "instruments.smu.alternatives[0]",
     "given once"),
    ('address = "emulator"\nalternatives = "GPIB0::1::INSTR"', "instruments.smu.alternatives",
     "a list"),
    ('address = ["emulator", "GPIB0::1::INSTR"]\nalternatives = []',
     "instruments.smu.alternatives", "no alternatives when address is a list"),
    ('address = ""', "instruments.smu.address", "VISA resource name"),
])
def test_malformed_address_lists_are_one_line(tmp_path, table, field, expected):
    p = _with_smu(tmp_path, table)
    with pytest.raises(ConfigError) as err:
        load_station_config(p)
    msg = str(err.value)
    assert str(p) in msg and repr(field) in msg and expected in msg, msg
    assert "\n" not in msg


def _with_extra(tmp_path, table: str):
    p = station_file(tmp_path, seed=1)
    p.write_text(p.read_text().replace("[limits]", f"{table}\n\n[limits]"))
    return p


def test_second_smu_opens_limited_and_recorded(tmp_path):
    p = _with_extra(tmp_path, '[instruments.extra.smu2]\nrole = "smu"\n'
                    f'address = ["{_dead_address()}", "emulator:smu"]\ntimeout_s = 2.0')
    with Station.open(p) as st:
        smu2 = st.extra["smu2"]
        assert "2450" in st.idn["extra.smu2"]
        assert st.snapshot()["addresses"]["extra.smu2"] == st.addresses["extra.smu2"]
        smu2.source_voltage = 0.2
        assert smu2.source_voltage == pytest.approx(0.2)
        settings = st.snapshot()["settings"]["extra.smu2"]
        assert settings["role"] == "smu" and settings["source_voltage_v"] == pytest.approx(0.2)
        with pytest.raises(Exception, match="smu_v_max_v"):  # the station's SMU limits
            smu2.source_voltage = 1.0
        smu2.enable_source()
    assert st._closed  # closed cleanly: outputs of both SMUs switched off without error


@pytest.mark.parametrize(("table", "field", "expected"), [
    ('[instruments.extra.smu2]\naddress = "emulator:smu"', "instruments.extra.smu2.role",
     "smu"),
    ('[instruments.extra.smu2]\nrole = "array"\naddress = "emulator:smu"',
     "instruments.extra.smu2.role", "smu"),
    ('[instruments.extra.smu]\nrole = "smu"\naddress = "emulator:smu"',
     "instruments.extra.smu", "not a role"),
    ('[instruments.extra.smu2]\nrole = "smu"\naddress = []', "instruments.extra.smu2.address",
     "non-empty list"),
    ('[instruments.extra.smu2]\nrole = "smu"\naddres = "x"', "instruments.extra.smu2.addres",
     "no such key"),
])
def test_malformed_extra_instruments_are_one_line(tmp_path, table, field, expected):
    p = _with_extra(tmp_path, table)
    with pytest.raises(ConfigError) as err:
        load_station_config(p)
    msg = str(err.value)
    assert str(p) in msg and repr(field) in msg and expected in msg, msg
    assert "\n" not in msg

"""Who listens on a port: read from the kernel's tables for sockets this test opens."""

from __future__ import annotations

import ipaddress
import os
import socket

from imgpipe.facts import listening_sockets

from support.prefect_server import free_port


def test_a_listening_socket_is_found_with_its_address_and_owner():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ((address, uid, inode),) = listening_sockets.listening(port)
        assert address == ipaddress.ip_address("127.0.0.1") and listening_sockets.is_loopback(address)
        assert uid == os.getuid()
        assert listening_sockets.owners(inode) == [os.getpid()]


def test_an_ipv6_socket_and_its_loopback_verdict():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        s.listen()
        ((address, _, _),) = listening_sockets.listening(s.getsockname()[1])
        assert address == ipaddress.ip_address("::1") and listening_sockets.is_loopback(address)
    assert listening_sockets.is_loopback(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not listening_sockets.is_loopback(ipaddress.ip_address("::"))
    assert not listening_sockets.is_loopback(ipaddress.ip_address("0.0.0.0"))


def test_a_host_name_or_text_is_loopback_only_when_it_names_this_machine():
    assert all(map(listening_sockets.is_loopback, ("localhost", "127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1")))
    assert not any(map(listening_sockets.is_loopback, ("0.0.0.0", "::", "10.0.0.1", "127.example.org", "node101", "",
                                                       None)))


def test_a_socket_that_does_not_listen_is_not_a_listener():
    port = free_port()
    assert listening_sockets.listening(port) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # bound, not listening
        assert listening_sockets.listening(port) == []


def test_the_kernels_address_words_are_read_in_host_order(tmp_path):
    (tmp_path / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1068 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n"
        "   1: 0100007F:1069 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1\n")
    (tmp_path / "tcp6").write_text(
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr "
        "tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000001000000:1068 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000  1000        0 77 1\n")
    found = listening_sockets.listening(0x1068, net=tmp_path)
    assert found == [(ipaddress.ip_address("127.0.0.1"), 1000, 4242), (ipaddress.ip_address("::1"), 1000, 77)]
    assert listening_sockets.listening(0x1069, net=tmp_path) == []  # established, not listening

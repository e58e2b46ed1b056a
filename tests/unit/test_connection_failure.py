"""What "Redis at <url> ..." says when a connection fails: refused apart from silent, with the fix.

The errors are the ones redis-py raises (the integration TLS tests meet them on
real servers; a TLS 1.3 reset races the server's alert there, so its shape is
pinned here).
"""

from __future__ import annotations

import redis

from framework.connection import connection_failure

RESET = redis.ConnectionError("Error while reading from socket: (104, 'Connection reset by peer')")


def test_a_tls_server_that_resets_a_new_connection_is_said_to_want_a_client_certificate() -> None:
    # TLS 1.3: a server with tls-auth-clients may reset before the client reads its alert
    message = connection_failure(RESET, 3, "rediss://127.0.0.1:6380/0")
    assert message.startswith("closed the TLS connection (ConnectionError: ")
    assert "set [redis] tls_cert_file and tls_key_file" in message


def test_a_plain_server_that_resets_did_not_answer() -> None:
    message = connection_failure(RESET, 3, "redis://127.0.0.1:6379/0")
    assert message.startswith("did not answer after 3 reconnection attempts")
    assert "tls_cert_file" not in message


def test_an_alert_or_a_refused_password_is_named_whatever_the_url() -> None:
    alert = redis.ConnectionError(
        "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"
    )
    assert connection_failure(alert, 3).startswith("asks for a client certificate")
    wrong = redis.AuthenticationError("WRONGPASS invalid username-password pair")
    assert connection_failure(wrong, 3, "rediss://h:6380").startswith("refused the credentials")

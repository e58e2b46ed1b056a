"""framework.masking: what counts as a secret, and how it is hidden in values, text and errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from framework.config import parse_settings
from framework.errors import ConfigError, StoredPayloadError
from framework.masking import DEFAULT_MASKER, MASK, Masker

SECRET_KEYS = [
    "secret", "webhookSecret", "client_secret", "password", "userPassword", "PASSWD", "db_pwd",
    "passphrase", "token", "accessToken", "refresh-token", "tokens_used", "max_tokens",
    "api_key", "apiKey", "X-Api-Key", "APIKEY", "access_key", "privateKey", "private",
    "is_private", "authorization", "Authorization", "auth", "oauth_state", "author",
    "signature", "X-Hub-Signature-256", "hmac", "sentry_dsn", "DSN", "jwt", "credentials",
    "credential", "cookie", "Set-Cookie", "session", "sessionId", "bearer", "salt",
    "idempotency_key", "keywords",
]  # fmt: skip
PLAIN_KEYS = ["to", "content", "url", "phone", "email", "contactId", "id", "type", "media_url",
              "body", "event", "name", "rows", "count", "n"]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_key_containing_a_secret_word_is_secret(key: str) -> None:
    assert DEFAULT_MASKER.is_secret(key)


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_other_keys_are_not(key: str) -> None:
    assert not DEFAULT_MASKER.is_secret(key)


def test_monkeys_are_masked_too_because_safe_beats_pretty() -> None:
    assert DEFAULT_MASKER.is_secret("monkeys")


def test_mask_fields_extend_the_words_case_and_separators_aside() -> None:
    # Given [dashboard] mask_fields
    settings = parse_settings(
        '[queues.a]\n[dashboard]\nmask_fields = ["card_number", "IBAN", "ssn"]\n', env={}
    )
    masker = Masker.of(settings)
    # Then those words are secret too, and the defaults still are
    for key in ("cardNumber", "card-number", "payer_iban", "SSN", "password"):
        assert masker.is_secret(key), key
    assert not masker.is_secret("card_holder")
    assert not DEFAULT_MASKER.is_secret("cardNumber")


@pytest.mark.parametrize("bad", ['[""]', '["__"]', '"token"'])
def test_mask_fields_must_be_words(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"\[dashboard\] mask_fields"):
        parse_settings(f"[queues.a]\n[dashboard]\nmask_fields = {bad}\n", env={})


# -- values ----------------------------------------------------------------------------------


def test_values_are_masked_at_any_depth_whatever_they_hold() -> None:
    payload = {
        "url": "https://example.com/hook",
        "secret": "whsec_1",
        "body": {"contactId": "c-42", "apiKey": 12345, "credentials": {"user": "u", "pw": "p"}},
        "headers": [{"Authorization": "Bearer abc"}, {"Accept": "json"}],
        "token": None,
        "is_private": True,
    }
    assert DEFAULT_MASKER.value(payload) == {
        "url": "https://example.com/hook",
        "secret": MASK,
        "body": {"contactId": "c-42", "apiKey": MASK, "credentials": MASK},
        "headers": [{"Authorization": MASK}, {"Accept": "json"}],
        "token": None,  # null and booleans hold no secret, and say whether one was given
        "is_private": True,
    }
    assert payload["secret"] == "whsec_1"  # the value given is left alone


def test_string_values_are_masked_as_text() -> None:
    payload = {
        "callback": "https://x.example/cb?access_token=at-1&page=2",
        "raw": '{"password": "pw-1", "user": "ada"}',
        "db_url": "postgres://app:pg-pass@db:5432/crm",
    }
    masked = DEFAULT_MASKER.value(payload)
    assert masked == {
        "callback": f"https://x.example/cb?access_token={MASK}&page=2",
        "raw": f'{{"password": "{MASK}", "user": "ada"}}',
        "db_url": f"postgres://app:{MASK}@db:5432/crm",
    }


# -- text ------------------------------------------------------------------------------------

TEXTS = [
    ("POST failed: {'password': 'hunter2', 'user': 'ada'}",
     f"POST failed: {{'password': '{MASK}', 'user': 'ada'}}"),
    ('{"api_key": "sk_1", "nested": {"clientSecret": {"a": [1, "}"]}}, "to": "+1"}',
     f'{{"api_key": "{MASK}", "nested": {{"clientSecret": "{MASK}"}}, "to": "+1"}}'),
    ("https://api.example.com/cb?access_token=abc123&x=1",
     f"https://api.example.com/cb?access_token={MASK}&x=1"),
    ("redis://:s3cr3t@10.0.0.7:6379/0", f"redis://:{MASK}@10.0.0.7:6379/0"),
    ("Authorization: Bearer abc.def", f"Authorization: Bearer {MASK}"),
    ("GET /x\nX-Api-Key: k 1\nAccept: json", f"GET /x\nX-Api-Key: {MASK}\nAccept: json"),
    ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", f"headers={{'Authorization': '{MASK}'}}"),
    ("Message(to='+1', api_key='k-1', n=3)", f"Message(to='+1', api_key='{MASK}', n=3)"),
    ("call(token=abc, n=2)", f"call(token={MASK}, n=2)"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln here", f"jwt {MASK} here"),
    ("to\n  Field required [type=missing, input_value={'to': '+1', 'pin': '4321'}, "
     "input_type=dict]",
     f"to\n  Field required [type=missing, input_value={MASK}, input_type=dict]"),
    ('{\\"password\\": \\"pw\\", \\"ok\\": 1}', f'{{\\"password\\": \\"{MASK}\\", \\"ok\\": 1}}'),
    ('"token": true, "secret": null, "key": 77', f'"token": true, "secret": null, "key": {MASK}'),
    ("KeyError: 'token=abc&x=1'", f"KeyError: 'token={MASK}&x=1'"),
    ("a==b; token==3; x!=y; token=", "a==b; token==3; x!=y; token="),
    ("api_key: Field required; to: Field required", "api_key: Field required; to: Field required"),
    ("nothing to hide: a=1 'b': 2", "nothing to hide: a=1 'b': 2"),
    # keys of any characters in quotes, and a form's bracketed keys (what a payload cut to
    # the bytes a page reads is masked by: the text, not its parsed keys)
    ('{"api key (prod)": "L1", "secret_\u00fc": "L2", "db/password": "L3", "auth:token": "L4"}',
     f'{{"api key (prod)": "{MASK}", "secret_\u00fc": "{MASK}", "db/password": "{MASK}", '
     f'"auth:token": "{MASK}"}}'),
    ('{"' + "stripe_webhook_signing_secret_for_the_production_environment_of_acme" + '": "L5"',
     '{"' + "stripe_webhook_signing_secret_for_the_production_environment_of_acme"
     + f'": "{MASK}"'),
    ("user[email]=a@b.c&user[password]=L6&commit=1",
     f"user[email]=a@b.c&user[password]={MASK}&commit=1"),
    ("db/password=L7 auth:token=L8", f"db/password={MASK} auth:token={MASK}"),
    # Python literals with a prefix (an HTTP client's bytes headers, a dataclass's repr)
    ("{'password': b'L9', 'user': b'ada'}", f"{{'password': b'{MASK}', 'user': b'ada'}}"),
    ("{'Authorization': b'Bearer L10'}", f"{{'Authorization': b'{MASK}'}}"),
    ("Creds(password=rb'L11', n=1)", f"Creds(password=rb'{MASK}', n=1)"),
    ("{'token': u'L12', 'key': f'L13'}", f"{{'token': u'{MASK}', 'key': f'{MASK}'}}"),
    # a scheme and its credentials after '=', as after ':'
    ("auth=Basic dXNlcjpzM2NyZXQ= next", f"auth={MASK} {MASK} next"),
    ("x-eyJabcdefgh.eyJabcdefgh.sig", "x-eyJabcdefgh.eyJabcdefgh.sig"),  # not a token's start
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), TEXTS)
def test_text_has_the_values_after_secret_keys_masked(text: str, expected: str) -> None:
    assert DEFAULT_MASKER.text(text) == expected


# -- exceptions ------------------------------------------------------------------------------


class Outbound(BaseModel):
    to: str
    content: str


def test_a_validation_error_is_described_without_its_input() -> None:
    # Given a ValidationError whose input holds a secret
    with pytest.raises(ValidationError) as caught:
        Outbound.model_validate({"content": 5, "api_token": "TOPSECRET"})
    # When it is described for a job's error, and its traceback formatted
    error = DEFAULT_MASKER.exception(caught.value)
    trace = DEFAULT_MASKER.traceback(caught.value)
    # Then the fields and problems are named, the input never
    assert error == (
        "ValidationError: 2 validation errors for Outbound: to: Field required; "
        "content: Input should be a valid string"
    )
    assert "TOPSECRET" not in error and "TOPSECRET" not in trace
    assert f"input_value={MASK}" in trace


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad payload {'to': '+1', 'password': 'pw-9'}"),
         f"ValueError: bad payload {{'to': '+1', 'password': '{MASK}'}}"),
        (StoredPayloadError("payload does not validate against Outbound: to: Field required"),
         "payload does not validate against Outbound: to: Field required"),
        (RuntimeError("GET https://api.x/y?api_key=k-77 failed"),
         f"RuntimeError: GET https://api.x/y?api_key={MASK} failed"),
    ],
)  # fmt: skip
def test_an_exception_is_described_with_its_secrets_masked(
    exc: BaseException, expected: str
) -> None:
    assert DEFAULT_MASKER.exception(exc) == expected


def test_a_traceback_masks_chained_exceptions_too() -> None:
    try:
        try:
            raise KeyError("token=inner-secret")
        except KeyError as inner:
            raise RuntimeError("{'password': 'outer-secret'}") from inner
    except RuntimeError as exc:
        trace = DEFAULT_MASKER.traceback(exc)
    assert "inner-secret" not in trace and "outer-secret" not in trace
    assert "RuntimeError" in trace and "KeyError" in trace


def test_an_exception_that_cannot_be_turned_into_text_is_still_described() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    class NotText(Exception):
        def __str__(self) -> str:
            return 42  # type: ignore[return-value]  # noqa: PLE0307

    assert DEFAULT_MASKER.exception(Broken()) == "Broken: <exception str() failed>"
    assert DEFAULT_MASKER.exception(NotText()) == "NotText: <exception str() failed>"
    assert DEFAULT_MASKER.exception(KeyboardInterrupt()) == "KeyboardInterrupt"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ["eyJ-", "eyJabcd.", "password=b'", "'password': ", "a://b:"])
def test_masking_a_mebibyte_of_text_made_to_be_slow_ends(unit: str) -> None:
    # A guard against patterns that try every position of a long text to its end: a 1 MiB
    # payload of "eyJ-" took the masker 270 s (and the dashboard with it, under the GIL);
    # linear scans take well under a second. Not a measurement: a bound 100x too loose.
    text = unit * ((1 << 20) // len(unit))
    assert isinstance(DEFAULT_MASKER.text(text), str)

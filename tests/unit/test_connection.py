"""The ``ccp`` connection: defaults, every extra, validation, and secrets kept out of repr."""

from __future__ import annotations

import pytest

from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.connection_fields import (
    AUTH_FLOW_NEEDS,
    DEFAULT_HOST,
    DEFAULT_MIN_DOWNLOAD_RATE,
    DEFAULT_TIMEOUT,
    DEFAULT_TOKEN_URL,
    AuthFlow,
)
from airflow_provider_ccp.exceptions import CCPConfigError, CCPError

CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab"
USER_EXTRA = {"client_id": "blue-cloud.d4science.org", "context": CONTEXT}


def settings(host=DEFAULT_HOST, login="alice", password="pw", schema=None, port=None, **extra) -> CCPConnectionSettings:
    return CCPConnectionSettings.from_fields(
        host=host, login=login, password=password, extra=extra, schema=schema, port=port
    )


def test_defaults():
    s = settings(**USER_EXTRA)
    assert s.base_url == DEFAULT_HOST == "https://ccp.cloud.d4science.org"
    assert s.token_url == DEFAULT_TOKEN_URL
    assert DEFAULT_TOKEN_URL == "https://accounts.d4science.org/auth/realms/d4science/protocol/openid-connect/token"
    assert s.auth_flow == "password_uma"
    assert s.verify is True
    assert s.timeout == DEFAULT_TIMEOUT == 60.0
    assert s.min_download_rate == DEFAULT_MIN_DOWNLOAD_RATE == 1024.0
    assert s.ui_url is None
    assert s.user == "alice"
    assert s.secret == "pw"
    assert s.client_secret is None


def test_every_extra_is_read(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    s = settings(
        host="https://ccp.cloud-dev.d4science.org/",
        keycloak_url="https://accounts.dev.d4science.org/auth/realms/d4science/protocol/openid-connect/token",
        client_id="svc",
        client_secret="s3",
        context=CONTEXT,
        auth_flow=" Client_Credentials ",
        verify=str(tmp_path / "ca.pem"),
        timeout="12.5",
        ui_url="https://ccp.cloud-dev.d4science.org/ui/",
    )
    assert s.base_url == "https://ccp.cloud-dev.d4science.org"
    assert s.token_url.startswith("https://accounts.dev.d4science.org/")
    assert (s.client_id, s.client_secret, s.context) == ("svc", "s3", CONTEXT)
    assert s.auth_flow == "client_credentials"
    assert s.verify == str(tmp_path / "ca.pem")
    assert s.timeout == 12.5
    assert s.ui_url == "https://ccp.cloud-dev.d4science.org/ui"


def test_old_form_prefixed_extras_are_read():
    s = settings(extra__ccp__client_id="blue-cloud.d4science.org", extra__ccp__context=CONTEXT, extra__ccp__timeout=5)
    assert s.client_id == "blue-cloud.d4science.org"
    assert s.context == CONTEXT
    assert s.timeout == 5.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("False", False), ("0", False), ("yes", True), ("", True)],
)
def test_verify(value, expected):
    assert settings(verify=value, **USER_EXTRA).verify is expected


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("ccp.example.org", "https", None, "https://ccp.example.org"),
        ("ccp.example.org", "http", 8080, "http://ccp.example.org:8080"),
        ("http://127.0.0.1:8765/", None, None, "http://127.0.0.1:8765"),
        ("http://127.0.0.1:8765", None, 9999, "http://127.0.0.1:8765"),
        ("https://example.org/ccp/api", None, 8443, "https://example.org:8443/ccp/api"),
    ],
)
def test_base_url(host, schema, port, expected):
    assert settings(host=host, schema=schema, port=port, **USER_EXTRA).base_url == expected


@pytest.mark.parametrize("host", [None, "", "  ", "/"])
def test_no_host_is_refused_naming_the_field(host):
    # A default CCP would be called instead, and "cannot reach it" retried until the task ran out of tries.
    with pytest.raises(CCPConfigError) as raised:
        settings(host=host, **USER_EXTRA)
    assert str(raised.value) == (
        "Connection field 'host' is empty; expected the CCP URL, e.g. https://ccp.cloud.d4science.org"
    )


@pytest.mark.parametrize("host", ["ccp.example.org", "127.0.0.1:8080", "localhost:8080/ccp"])
def test_a_host_without_a_scheme_is_refused_naming_the_field(host):
    # https guessed for a plain-HTTP port meets an SSL error, which a retry meets again.
    with pytest.raises(CCPConfigError) as raised:
        settings(host=host, **USER_EXTRA)
    assert str(raised.value) == (
        f"Connection field 'host' is {host!r}, without a scheme; expected an http:// or https:// URL, "
        "e.g. https://ccp.cloud.d4science.org"
    )


@pytest.mark.parametrize("timeout", ["soon", "0", -1, "nan", float("nan"), "inf", float("-inf"), "-5"])
def test_bad_timeout(timeout):
    with pytest.raises(CCPError, match="'timeout'"):
        settings(timeout=timeout, **USER_EXTRA)


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), (2048, 2048.0), ("512.5", 512.5), ("", 1024.0)])
def test_min_download_rate(value, expected):
    assert settings(min_download_rate=value, **USER_EXTRA).min_download_rate == expected
    assert settings(extra__ccp__min_download_rate=value, **USER_EXTRA).min_download_rate == expected


@pytest.mark.parametrize("rate", ["fast", -1, "nan", float("inf"), [1024]])
def test_bad_min_download_rate(rate):
    with pytest.raises(CCPError) as raised:
        settings(min_download_rate=rate, **USER_EXTRA)
    assert str(raised.value) == (
        f"Connection extra 'min_download_rate' is {rate!r}; expected a number of bytes per second, 0 or more "
        "(0: any byte within each timeout will do)"
    )


def test_unknown_auth_flow_lists_the_valid_ones():
    with pytest.raises(CCPError, match="'magic'") as raised:
        settings(auth_flow="magic", **USER_EXTRA)
    assert all(flow.value in str(raised.value) for flow in AuthFlow)


@pytest.mark.parametrize("stored", ["client_credentials", "Client_Credentials ", AuthFlow.CLIENT_CREDENTIALS])
def test_a_stored_flow_name_reads_as_its_enum_member(stored):
    """Connections store the flow's name as a string: it keeps working, and compares equal to both."""
    flow = settings(login=None, password=None, client_secret="s", auth_flow=stored, **USER_EXTRA).auth_flow
    assert flow is AuthFlow.CLIENT_CREDENTIALS
    assert flow == "client_credentials"
    assert f"auth_flow={flow}" == "auth_flow=client_credentials"


@pytest.mark.parametrize("flow", list(AuthFlow))
def test_every_field_a_flow_needs_is_required_by_the_table(flow):
    """Validation reads the one table: leaving out any field a flow lists fails, naming the flow."""
    full = {"login": "alice", "password": "pw", "client_secret": "s", **USER_EXTRA, "auth_flow": flow.value}
    assert settings(**full).auth_flow is flow
    arguments = {"user": "login", "secret": "password"}
    for field in AUTH_FLOW_NEEDS[flow].fields:
        with pytest.raises(CCPError, match=f"auth_flow={flow.value}"):
            settings(**full | {arguments.get(field, field): None})


@pytest.mark.parametrize(
    ("flow", "fields", "missing"),
    [
        ("password_uma", {"login": None, "password": None}, ["login (the D4Science user)", "password"]),
        ("password_scope", {"client_id": None}, ["extra 'client_id'"]),
        ("context_header", {"context": None}, ["extra 'context'"]),
        ("client_credentials", {"login": None, "password": None}, ["extra 'client_secret'"]),
        ("refresh_token", {"password": None}, ["password (the offline/refresh token)"]),
        ("token", {"password": None, "client_id": None, "context": None}, ["password (the bearer token)"]),
    ],
)
def test_missing_fields_are_named(flow, fields, missing):
    kwargs = {"login": "alice", "password": "pw", **USER_EXTRA, "auth_flow": flow} | fields
    with pytest.raises(CCPError, match=f"auth_flow={flow}") as raised:
        settings(**kwargs)
    for label in missing:
        assert label in str(raised.value)


@pytest.mark.parametrize(
    ("flow", "kwargs"),
    [
        ("token", {"login": None, "password": "bearer"}),
        ("none", {"login": None, "password": None}),
        ("client_credentials", {"login": None, "password": None, "client_secret": "s", **USER_EXTRA}),
        ("refresh_token", {"login": None, "password": "offline", **USER_EXTRA}),
    ],
)
def test_flows_without_a_user(flow, kwargs):
    assert settings(auth_flow=flow, **kwargs).auth_flow == flow


def test_context_must_be_a_path():
    with pytest.raises(CCPError, match="starting with '/'"):
        settings(client_id="c", context="d4science.research-infrastructures.eu/D4OS/Blue-CloudLab")


def test_repr_shows_no_secret():
    s = settings(password="very-secret-password", client_secret="very-secret-client", **USER_EXTRA)
    assert "very-secret" not in repr(s)
    assert "very-secret" not in str(s)
    assert s.secrets == ("very-secret-password", "very-secret-client")


def test_cache_key_changes_with_credentials_and_context_only():
    base = settings(**USER_EXTRA)
    assert base.cache_key == settings(host="https://elsewhere.example.org", **USER_EXTRA).cache_key
    assert base.cache_key == settings(timeout=3, **USER_EXTRA).cache_key
    assert base.cache_key != settings(password="other", **USER_EXTRA).cache_key
    assert base.cache_key != settings(login="bob", **USER_EXTRA).cache_key
    assert base.cache_key != settings(client_id="other", context=CONTEXT).cache_key
    assert base.cache_key != settings(client_id=USER_EXTRA["client_id"], context=CONTEXT + "2").cache_key
    assert base.cache_key != settings(auth_flow="password_scope", **USER_EXTRA).cache_key
    assert len(base.cache_key) == 64


def test_the_token_endpoint_extra_keeps_its_old_name_working():
    legacy = "https://accounts.dev.d4science.org/auth/realms/d4science/protocol/openid-connect/token"
    assert settings(token_url=legacy, **USER_EXTRA).token_url == legacy
    # The new name wins when a connection has both (a form save adds it next to the old one).
    both = settings(token_url=legacy, keycloak_url="https://kc.example/token", **USER_EXTRA)
    assert both.token_url == "https://kc.example/token"


def test_airflow_does_not_mask_the_token_endpoint_extra():
    """Airflow hides any field whose name holds "token": the endpoint must not be one of them."""
    from airflow.sdk._shared.secrets_masker.secrets_masker import should_hide_value_for_key

    from airflow_provider_ccp.connection_fields import TOKEN_ENDPOINT_FIELD

    assert should_hide_value_for_key("token_url")  # why the extra was renamed
    assert not should_hide_value_for_key(TOKEN_ENDPOINT_FIELD)


def test_a_verify_path_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "no-such-ca.pem"

    with pytest.raises(CCPError, match=r"^Connection extra 'verify' is '.*no-such-ca.pem', which does not exist"):
        settings(verify=str(missing), **USER_EXTRA)


def test_a_verify_path_that_exists_is_kept(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")

    assert settings(verify=str(bundle), **USER_EXTRA).verify == str(bundle)


@pytest.mark.parametrize(
    "host", ["https://ccp.example.org/?x=1", "https://ccp.example.org#top", "https://ccp.example.org?", "http://h#"]
)
def test_a_host_with_a_query_or_fragment_is_named(host):
    with pytest.raises(CCPError, match=r"^Connection field 'host' is .*without a query string or fragment"):
        settings(host=host, **USER_EXTRA)


@pytest.mark.parametrize(
    ("field", "fields", "named"),
    [
        ("host", {"host": "https://u:pw-in-url@ccp.example.org"}, "field 'host'"),
        ("host", {"host": "u:pw-in-url@ccp.example.org"}, "field 'host'"),  # no scheme: refused for the password
        ("host", {"host": "https://only-a-user@ccp.example.org"}, "field 'host'"),
        ("keycloak_url", {"keycloak_url": "https://u:pw-in-url@accounts.example.org/token"}, "extra 'keycloak_url'"),
        ("ui_url", {"ui_url": "https://u:pw-in-url@ui.example.org"}, "extra 'ui_url'"),
    ],
)
def test_a_url_with_credentials_is_refused_without_repeating_them(field, fields, named):
    with pytest.raises(CCPError) as raised:
        settings(**USER_EXTRA, **fields)
    assert str(raised.value) == (
        f"Connection {named} holds a user name or password ('user:password@'); expected the URL without them: "
        "put the user in the connection's login and the password in its password field"
    )


class _Conn:
    """The fields of an ``airflow.sdk.Connection`` that ``from_connection`` reads."""

    def __init__(self, extra: str) -> None:
        self.host, self.login, self.password, self.schema, self.port = DEFAULT_HOST, "alice", "pw", None, None
        self.extra = extra

    @property
    def extra_dejson(self) -> dict:
        from airflow.sdk import Connection

        return Connection(conn_id="x", conn_type="ccp", extra=self.extra).extra_dejson


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('{"client_id": "c", "client_secret": "s3cr3t-value",}', "is not valid JSON"),
        ("client_id=c", "is not valid JSON"),
        ('["client_id"]', "is a JSON list; expected a JSON object"),
    ],
)
def test_extra_that_is_not_a_json_object_is_named_without_its_content(extra, expected):
    with pytest.raises(CCPError, match=r"^Connection field 'extra' ") as raised:
        CCPConnectionSettings.from_connection(_Conn(extra))

    assert expected in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_valid_extra_json_is_read():
    settings = CCPConnectionSettings.from_connection(_Conn('{"client_id": "c", "context": "/a/b"}'))

    assert (settings.client_id, settings.context) == ("c", "/a/b")

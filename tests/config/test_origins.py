"""Only the UI's own origin (scheme, host and port) may open its WebSockets or send it unsafe
requests: a deployed app on another port of the same host gets the UI's cookies from the
browser, and must not be able to use them. Against the real web server (scripts/web.sh)."""

import base64
import http.client
import os
import re
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth.models import User

from config.environment import url_origin
from pipelines.models import PipelineRun
from tests.factories import make_project

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long test password"
ANOTHER_PORT = "http://127.0.0.1:9100"


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ada", password=PASSWORD, is_staff=True)


def logged_in(server: str) -> requests.Session:
    """A browser's session: the login form, sent from the UI's own page."""
    session = requests.Session()
    session.get(f"{server}/accounts/login/", timeout=10)
    answer = session.post(
        f"{server}/accounts/login/",
        data={
            "username": "ada",
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Origin": url_origin(server), "Referer": f"{server}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return session


def websocket_handshake(server: str, path: str, *, origin: str, cookies: str) -> int:
    """The HTTP status a WebSocket handshake gets: 101 when the socket is opened."""
    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request(
            "GET",
            path,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                "Sec-WebSocket-Version": "13",
                "Origin": origin,
                "Cookie": cookies,
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def test_a_websocket_opens_from_the_uis_origin_only(web_server: str, operator: User) -> None:
    session = logged_in(web_server)
    run = PipelineRun.objects.create(
        project=make_project(),
        number=1,
        ref="refs/heads/main",
        commit_sha="a" * 40,
        trigger="manual",
    )
    path = f"/ws/runs/{run.pk}/"

    assert (
        websocket_handshake(web_server, path, origin=ANOTHER_PORT, cookies=cookie_header(session))
        == 403
    )
    # The same host under another scheme, and a lookalike host, are other origins too.
    parts = urlsplit(web_server)
    for origin in (
        f"https://{parts.netloc}",
        f"http://{parts.hostname}.evil.example:{parts.port}",
        "null",
    ):
        assert (
            websocket_handshake(web_server, path, origin=origin, cookies=cookie_header(session))
            == 403
        )
    # From the UI itself the handshake goes through.
    assert (
        websocket_handshake(
            web_server, path, origin=url_origin(web_server), cookies=cookie_header(session)
        )
        == 101
    )


def test_an_unsafe_request_from_another_port_is_refused_whatever_token_it_carries(
    web_server: str, operator: User
) -> None:
    session = logged_in(web_server)
    project = make_project()
    page = session.get(f"{web_server}/projects/{project.slug}/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    rotate = f"{web_server}/projects/{project.slug}/rotate-secret/"
    secret_before = project.webhook_secret

    refused = session.post(
        rotate,
        data={"csrfmiddlewaretoken": token[1]},
        headers={"Origin": ANOTHER_PORT},
        allow_redirects=False,
        timeout=10,
    )

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_refused"
    assert ANOTHER_PORT in refused.json()["error"]["message"]
    project.refresh_from_db()
    assert project.webhook_secret == secret_before

    accepted = session.post(
        rotate,
        data={"csrfmiddlewaretoken": token[1]},
        headers={"Origin": url_origin(web_server)},
        allow_redirects=False,
        timeout=10,
    )
    assert accepted.status_code == 302
    project.refresh_from_db()
    assert project.webhook_secret != secret_before


def test_api_writes_with_a_token_and_no_origin_still_work(web_server: str, operator: User) -> None:
    from api.tokens import api_token_issue

    token = api_token_issue(user=operator)
    answer = requests.post(
        f"{web_server}/api/v1/chatops/",
        json={"text": "help"},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text

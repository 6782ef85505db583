"""The pages around the app: errors, logging in, and the way back from the API docs and the
admin."""

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.views.defaults import server_error

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_styled_and_leads_back_to_the_app(client: Client) -> None:
    client.force_login(User.objects.create_user("viewer"))
    response = client.get("/projects/no-such-project/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "/static/css/dockyard.css" in page and 'class="site-header"' in page
    assert "<h1>Nothing here</h1>" in page
    assert 'href="/">Back to the dashboard</a>' in page


def test_a_server_error_page_is_styled_and_needs_neither_a_request_nor_the_database() -> None:
    response = server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "/static/css/dockyard.css" in page
    assert "<h1>Something went wrong</h1>" in page and 'href="/">Back to the dashboard</a>' in page


def test_a_failed_login_says_so_once(client: Client) -> None:
    User.objects.create_user("ada", password="the right one")
    page = client.post(
        "/accounts/login/", {"username": "ada", "password": "wrong"}
    ).content.decode()
    assert page.count("Please enter a correct username and password") == 1
    assert "did not match" not in page


def test_the_api_docs_lead_back_to_the_app(client: Client) -> None:
    client.force_login(User.objects.create_user("viewer"))
    page = client.get("/api/v1/docs/").content.decode()
    assert '<a href="/" id="back-to-dockyard">' in page
    assert 'id="swagger-ui"' in page


def test_the_admin_leads_back_to_the_app_and_speaks_of_chat_identities(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", password="x"))
    page = client.get("/admin/").content.decode()
    assert '<a href="/" id="back-to-dockyard">' in page
    assert "Dockyard admin" in page
    assert "Chat identities" in page and "Chat identitys" not in page

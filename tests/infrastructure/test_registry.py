"""The registry adapter against the real registry."""

import uuid

import pytest
from django.conf import settings

from infrastructure.registry import ImageName, RegistryError, manifest_digest

pytestmark = pytest.mark.docker


def test_an_unknown_tag_is_none_not_an_error() -> None:
    repository = f"{settings.DOCKYARD_REGISTRY}/no-such-{uuid.uuid4().hex[:8]}"
    assert manifest_digest(repository, "latest") is None


def test_an_unreachable_registry_is_an_error_naming_it() -> None:
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:1 unreachable"):
        manifest_digest("127.0.0.1:1/acme/web", "latest")


def test_a_repository_without_a_registry_is_refused() -> None:
    with pytest.raises(RegistryError, match="names no registry"):
        ImageName.parse("web")

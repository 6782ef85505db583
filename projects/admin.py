"""Projects in the admin: secrets write-only, the repository URL under the API's rules."""

import secrets
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from infrastructure.repository_urls import repository_key, shown, split_credentials
from projects.models import Project, ProjectSecret
from projects.services import (
    ProjectError,
    forge_repository_from_key,
    project_publish_repositories_check,
    project_repository_url_check,
    project_settings_check,
    project_slug_check,
)

KEEP_HELP = "Never shown. Leave empty to keep the current one."


class WriteOnlySecretField(forms.CharField):
    """A secret typed in and never shown back: only a value typed in is a change (the admin's
    history would otherwise say it changed on every save)."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


class ProjectAdminForm(forms.ModelForm):
    """Secrets are write-only here: the page never carries them, so an admin screen left open
    (or its HTML in a browser cache) gives nobody the webhook secret or the forge token."""

    webhook_secret = WriteOnlySecretField(
        required=False,
        min_length=16,
        max_length=200,
        help_text=KEEP_HELP + " A new project without one gets a random secret.",
    )
    forge_token = WriteOnlySecretField(required=False, max_length=500, help_text=KEEP_HELP)
    clear_forge_token = forms.BooleanField(
        required=False, help_text="Remove the forge token: no more commit statuses."
    )
    repository_credentials = WriteOnlySecretField(
        required=False,
        max_length=1000,
        help_text=KEEP_HELP
        + " user:password (or a token) for an https repository; credentials typed into the "
        "URL are moved here.",
    )
    clear_repository_credentials = forms.BooleanField(
        required=False, help_text="Clone the repository without credentials."
    )

    class Meta:
        model = Project
        # repository_key follows the URL (ProjectAdmin.save_model); created_at is the clock's.
        fields = [
            "slug",
            "repository_url",
            "forge",
            "webhook_secret",
            "default_branch",
            "test_command",
            "test_timeout",
            "branch_filter",
            "tag_filter",
            "build_pull_requests",
            "cancel_superseded",
            "forge_api_url",
            "forge_repository",
            "forge_token",
            "repository_credentials",
            "publish_repositories",
            "test_network_allowed",
        ]

    def clean_repository_url(self) -> str:
        url: str = self.cleaned_data["repository_url"]
        # The same rules as the API and addproject: the admin is no way around them.
        try:
            project_repository_url_check(url)
        except ProjectError as error:
            raise forms.ValidationError(str(error)) from None
        key = repository_key(url)
        clash = Project.objects.filter(repository_key=key).exclude(pk=self.instance.pk).first()
        if clash is not None:
            raise forms.ValidationError(f"this repository is already project {clash.slug!r}")
        # Kept apart from the URL (clean() moves them), so no page that shows it shows them.
        url, self._credentials_in_url = split_credentials(url)
        return url

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        try:
            project_slug_check(slug)
        except ProjectError as error:
            raise forms.ValidationError(str(error)) from None
        return slug

    def clean_webhook_secret(self) -> str:
        given: str = self.cleaned_data["webhook_secret"]
        if given:
            return given
        return self.instance.webhook_secret if self.instance.pk else secrets.token_hex(24)

    def clean_publish_repositories(self) -> str:
        text: str = self.cleaned_data["publish_repositories"]
        try:
            return "\n".join(
                project_publish_repositories_check(
                    text.splitlines(), slug=self.data.get("slug") or self.instance.slug
                )
            )
        except ProjectError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_forge_token(self) -> str:
        given: str = self.cleaned_data["forge_token"]
        if given:
            return given
        return self.instance.forge_token if self.instance.pk else ""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        # The rules the API and addproject apply: a project the admin saves runs the same way.
        checked = ("test_command", "test_timeout", "branch_filter", "tag_filter", "forge_api_url")
        if all(name in cleaned for name in checked):
            try:
                project_settings_check(**{name: cleaned[name] for name in checked})
            except ProjectError as error:
                raise forms.ValidationError(str(error)) from None
        if cleaned.get("clear_forge_token"):
            if self.data.get("forge_token"):
                self.add_error("clear_forge_token", "either give a new forge token or clear it")
            cleaned["forge_token"] = ""
        typed = self.data.get("repository_credentials") or getattr(self, "_credentials_in_url", "")
        if cleaned.get("clear_repository_credentials"):
            if typed:
                self.add_error(
                    "clear_repository_credentials", "either give credentials or clear them"
                )
            cleaned["repository_credentials"] = ""
        elif typed:
            cleaned["repository_credentials"] = typed
        else:
            cleaned["repository_credentials"] = self.instance.repository_credentials
        return cleaned


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
    list_display = ["slug", "forge", "repository", "default_branch", "created_at"]
    search_fields = ["slug", "repository_url"]
    readonly_fields = ["repository_key", "created_at"]

    @admin.display(description="repository", ordering="repository_url")
    def repository(self, project: Project) -> str:
        # A token in the URL (https://token@host/...) is not for every page that lists projects.
        return shown(project.repository_url)

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        # Webhooks find their project by this key: it follows the URL.
        obj.repository_key = repository_key(obj.repository_url)
        if not obj.forge_repository:
            obj.forge_repository = forge_repository_from_key(obj.repository_key)
        super().save_model(request, obj, form, change)


@admin.register(ProjectSecret)
class ProjectSecretAdmin(admin.ModelAdmin):
    """Which secrets exist; values are set with `manage.py setsecret` and never shown."""

    list_display = ["project", "name", "updated_at"]
    fields = readonly_fields = ("project", "name", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

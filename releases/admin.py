"""Releases and deployments are read here, never edited; environments and hosts are edited
here (hosts, and which hosts an environment runs on, by superusers only: audited)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from audit.actors import request_actor
from audit.models import AuditAction
from audit.services import audit_record
from releases.hosts import address_problem, engine_url_problem
from releases.models import Deployment, DeploymentEvent, Environment, Host, HostDeployment, Release


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["project", "number", "commit_sha", "image", "created_at"]
    list_filter = ["project"]


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = readonly_fields = ("at", "host", "from_status", "to_status", "detail")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class HostDeploymentInline(admin.TabularInline):
    model = HostDeployment
    fields = readonly_fields = (
        "host",
        "batch",
        "status",
        "container_id",
        "reused_container",
        "failure_reason",
        "started_at",
        "finished_at",
    )
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "environment",
        "release",
        "previous_release",
        "kind",
        "requested_by",
        "status",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "environment__project"]
    inlines = [HostDeploymentInline, DeploymentEventInline]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "frontend_port", "live_slot", "current_release"]
    list_filter = ["project", "hosts"]
    # Which slot is live and what runs there belong to deployments, not to hand edits.
    readonly_fields = ["live_slot", "current_release", "blue_port", "green_port", "frontend_port"]
    filter_horizontal = ["deployers", "hosts"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(self.readonly_fields)
        if not request.user.is_superuser:  # where the secrets go is a superuser's choice
            fields += ["hosts", "max_parallel"]
        return fields

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        environment = form.instance
        before = sorted(environment.hosts.values_list("name", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        after = sorted(environment.hosts.values_list("name", flat=True))
        if before != after:
            audit_record(
                action=AuditAction.ENVIRONMENT_HOSTS_CHANGED,
                target=environment,
                detail={"before": {"hosts": before}, "after": {"hosts": after}},
                actor=request_actor(request),
            )


class HostForm(forms.ModelForm):
    class Meta:
        model = Host
        fields = ["name", "engine_url", "address"]

    def clean_engine_url(self) -> str:
        url = str(self.cleaned_data["engine_url"])
        if problem := engine_url_problem(url):
            raise forms.ValidationError(problem)
        return url

    def clean_address(self) -> str:
        address = str(self.cleaned_data["address"])
        if problem := address_problem(address):
            raise forms.ValidationError(problem)
        return address


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Hosts are named, pointed at an engine and given an address here; an environment lists
    the hosts it runs on (on its own page)."""

    form = HostForm
    list_display = ["name", "engine_url", "address", "created_at"]
    search_fields = ["name", "engine_url", "address"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return bool(request.user.is_superuser)

    def save_model(self, request: HttpRequest, obj: Host, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and not form.changed_data:
            return
        audit_record(
            action=AuditAction.HOST_CHANGED if change else AuditAction.HOST_ADDED,
            target=obj,
            detail={
                "engine_url": obj.engine_url,
                "address": obj.address,
                "changed": sorted(form.changed_data),
            },
            actor=request_actor(request),
        )

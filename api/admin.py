from django.contrib import admin

from api.models import ChatIdentity


@admin.register(ChatIdentity)
class ChatIdentityAdmin(admin.ModelAdmin):
    list_display = ["provider", "external_id", "user"]
    search_fields = ["external_id", "user__username"]

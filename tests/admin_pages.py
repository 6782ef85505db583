"""Django's admin pages driven as a browser would: forms read from the page, posted back."""

from typing import Any

from django.forms import MultiWidget
from django.test import Client


def admin_form_data(client: Client, url: str, **changes: Any) -> dict[str, Any]:
    """The admin change form as a browser would post it back, with `changes` made."""
    form = client.get(url).context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = changes.get(name, form[name].value())
        if isinstance(field.widget, MultiWidget):
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list | tuple):
            data[name] = [str(item) for item in value]
        else:
            data[name] = "" if value is None else value
    return data

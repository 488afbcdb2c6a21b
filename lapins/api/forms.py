"""The agenda's forms, fed with an API body: their French messages and rules serve both, written once."""
from __future__ import annotations

from werkzeug.datastructures import MultiDict

from lapins.api.routing import invalid


def formdata(values: dict) -> MultiDict:
    """A body's values as a browser would post them: text, lists as repeated fields, true ticks and false absent."""
    data = MultiDict()
    for name, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            data.add(name, "y")
        elif isinstance(value, list):
            for item in value:
                data.add(name, str(item))
        elif hasattr(value, "strftime") and hasattr(value, "hour") and not hasattr(value, "year"):
            data.add(name, value.strftime("%H:%M"))
        elif hasattr(value, "isoformat"):
            data.add(name, value.isoformat())
        else:
            data.add(name, str(value))
    return data


def validated(form, renamed: dict[str, str] | None = None):
    """The form once valid, else a 422 naming each refused field as the API calls it."""
    if form.validate():
        return form
    renamed = renamed or {}
    fields = {renamed.get(name, name): messages[0] for name, messages in form.errors.items() if messages}
    raise invalid(fields or {"": "Valeurs refusées."})

"""`edit KIND/NAME`: a resource as `get -o yaml` shows it, for a person to change, and the changed text
applied as `apply` would, or the error to show them with it.

Called by the CLI's ``edit`` (``cli/resources.py``), which runs the editor: ``document`` gives the
text to open, ``apply_edit`` reads what was saved back, and on a ``ManifestError`` (or a refusal of
the store) ``with_error`` gives the text to reopen, the saved text with the error on top as
comments. An HTTP API or a web page can offer the same round trip without an editor.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import views
from ..errors import ManifestError, UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, object_ref

HEADER = ("# Edit the object below and save; lines beginning with '#' are ignored, and an empty file\n"
          "# cancels the edit. If it cannot be applied, this file is reopened with the error.\n")


class Edited(NamedTuple):
    ref: str  # job/hello, as `apply` prints it
    outcome: str | None  # configured | unchanged; None: cancelled (``message`` says why)
    message: str = ""


def document(store, kind: Kind, name: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The text to edit: the header, then the resource as `get -o yaml` shows it (one document)."""
    from .resources import get_resources

    if kind is Kind.SECRET:  # `get` shows a Secret's values as their sizes: saving that back would lose them
        raise UsageError(f"edit secret/{name}: a Secret's values are never shown, so it cannot be edited here; "
                         "change its manifest and `brokerctl apply -f FILE`")
    [obj] = get_resources(store, kind, name, None, namespace)
    return HEADER + views.dump(obj, "yaml")


def with_error(edited: str, error: str) -> str:
    """The text to reopen after ``error``: the header, the error as comments, then what was saved (its
    own leading comments, an earlier header and error, left out)."""
    lines = edited.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    problem = "".join(f"# {line}\n" if line else "#\n" for line in error.splitlines())
    return HEADER + "#\n# The edit could not be applied:\n" + problem + "#\n" + "".join(lines)


def apply_edit(store, kind: Kind, name: str, namespace: str, original: str, edited: str, source: str) -> Edited:
    """Apply the saved text ``edited`` (read from ``source``, named in errors with line numbers) to the
    resource ``original`` showed. Unchanged (comments aside) or empty: cancelled. A document that is
    invalid, is not exactly one, or names another resource: ``ManifestError``; the store's refusals
    (a Job's template, a namespace's runAs) raise as in `apply`."""
    import yaml

    from ..spec import manifests

    ref = object_ref(kind, namespace if kind.namespaced else "", name)
    try:
        saved = yaml.safe_load(edited)
    except yaml.YAMLError:
        saved = ...  # not YAML: the loader below says where
    if saved is None:
        return Edited(ref, None, "Edit cancelled, saved file was empty.")
    if saved == yaml.safe_load(original):
        return Edited(ref, None, "Edit cancelled, no changes made.")
    loaded = manifests.load_text(edited, source, namespace)
    if len(loaded) != 1:
        raise ManifestError([f"{source}: {len(loaded)} documents; `edit` changes the one object it opened "
                             f"({ref})"])
    item = loaded[0]
    res = item.resource
    if res.key != (kind, namespace if kind.namespaced else "", name):
        raise ManifestError([f"{source}: document 1 is {object_ref(res.kind, res.namespace, res.metadata.name)}, "
                             f"not {ref}: `edit` changes the object it opened; to make another, save it to a file "
                             "and `brokerctl apply -f FILE`"])
    [(_, outcome)] = store.apply([res], where=[f"{source}: document 1 ({res.kind}/{res.metadata.name})"])
    return Edited(ref, outcome)

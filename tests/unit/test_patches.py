"""The one guard over the library patches: installed versions against those
each patch was written for; a mismatch refuses to start unless
ALLOW_UNPATCHED, and then only the mismatched patches are left out."""

import ast
import pathlib

import pytest

from service.adapters import patches
from service.adapters.patches import (
    CLUSTER_CHANNEL,
    ENGINEIO_SESSIONS,
    PATCHES,
    POOL_CHECKOUT,
    SESSIONS_CONNECTION_BYTES,
    SOCKETIO_MESSAGES,
    UPSTREAM_CONNECTION_BYTES,
    WEBSOCKET_FRAMES,
    UnpatchedLibrary,
    check,
)

PACKAGE = pathlib.Path(patches.__file__).parent
PINNED = {package: expected for patch in PATCHES for package, expected in patch.written_for}


def installed(**changed):
    versions = {**PINNED, **changed}
    return lambda distribution: versions.get(distribution)


def test_at_the_pinned_versions_every_patch_is_in_force():
    in_force = check(allow_unpatched=False)  # the versions installed here
    assert in_force.names == {p.name for p in PATCHES} and not in_force.left_out
    assert in_force.connection_bytes == SESSIONS_CONNECTION_BYTES
    assert "in force" in in_force.summary()


def test_the_pinned_versions_are_those_of_pyproject():
    text = (PACKAGE.parents[2] / "pyproject.toml").read_text().lower()
    for package, expected in PINNED.items():
        assert f'"{package.lower()}=={expected}"' in text, package


def test_a_mismatch_refuses_naming_the_package_both_versions_and_the_way_out():
    with pytest.raises(UnpatchedLibrary) as refused:
        check(allow_unpatched=False, installed=installed(**{"python-engineio": "4.16.0"}))
    message = str(refused.value)
    assert "python-engineio 4.16.0 is installed" in message
    assert f"{ENGINEIO_SESSIONS} was written for 4.15.1" in message
    assert "ALLOW_UNPATCHED=1" in message and "own behaviour" in message
    assert [m.patch for m in refused.value.mismatches] == [ENGINEIO_SESSIONS]


def test_a_library_missing_is_a_mismatch_too():
    with pytest.raises(UnpatchedLibrary, match="gevent-websocket not installed"):
        check(allow_unpatched=False, installed=installed(**{"gevent-websocket": None}))


@pytest.mark.parametrize(("package", "left_out"), [
    ("python-engineio", {ENGINEIO_SESSIONS}),
    ("python-socketio", {ENGINEIO_SESSIONS, SOCKETIO_MESSAGES, CLUSTER_CHANNEL}),
    ("gevent-websocket", {ENGINEIO_SESSIONS, WEBSOCKET_FRAMES}),
    ("SQLAlchemy", {POOL_CHECKOUT}),
])
def test_allowed_unpatched_only_the_mismatched_patches_are_left_out(package, left_out):
    in_force = check(allow_unpatched=True, installed=installed(**{package: "0.0.1"}))
    assert in_force.names == {p.name for p in PATCHES} - left_out
    assert {m.patch for m in in_force.left_out} == left_out
    assert all(m.installed == "0.0.1" for m in in_force.left_out)
    expected = (UPSTREAM_CONNECTION_BYTES if ENGINEIO_SESSIONS in left_out
                else SESSIONS_CONNECTION_BYTES)
    assert in_force.connection_bytes == expected
    assert "ALLOW_UNPATCHED=1" in in_force.summary() and package in in_force.summary()


def test_only_checks_the_patches_asked_for():
    versions = installed(SQLAlchemy="0.0.1")
    assert check(allow_unpatched=False, only=[WEBSOCKET_FRAMES], installed=versions).names \
        == {WEBSOCKET_FRAMES}
    with pytest.raises(UnpatchedLibrary):
        check(allow_unpatched=False, only=[POOL_CHECKOUT], installed=versions)


def test_every_patch_has_a_module_whose_docstring_names_what_it_replaces_and_its_version():
    assert {p.name for p in PATCHES} == {
        path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    for patch in PATCHES:
        doc = ast.get_docstring(ast.parse((PACKAGE / f"{patch.name}.py").read_text()))
        assert doc and "Replaces, in" in doc, patch.name
        for _, expected in patch.written_for:
            assert expected in doc, (patch.name, expected)
        assert "Contract test: tests/" in doc, patch.name
        test = doc.split("Contract test: ")[1].split()[0].rstrip(".")
        assert (PACKAGE.parents[2] / test).exists(), test


def test_the_library_patches_doc_lists_every_patch():
    doc = (PACKAGE.parents[2] / "docs" / "library-patches.md").read_text()
    for patch in PATCHES:
        assert f"`{patch.name}`" in doc, patch.name
        for package, expected in patch.written_for:
            assert f"{package} {expected}" in doc, (patch.name, package)
    assert "ALLOW_UNPATCHED" in doc

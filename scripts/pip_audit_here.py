"""pip-audit over this environment, also where the package index serves only PyPI's project JSON.

pip-audit asks PyPI's JSON API for each installed release (``/pypi/<name>/<version>/json``). Some mirrors,
this project's CI machines among them, answer that with 404 but serve the project document
(``/pypi/<name>/json``), whose vulnerabilities are those of the project's latest release. This wrapper lets
pip-audit read that document when the installed release is the latest one, so the audit is real; any other
release stays "could not be audited", and ``--strict`` (passed by scripts/release-checks.sh) fails on it
rather than report "No known vulnerabilities" for packages it never looked at.

Usage: python scripts/pip_audit_here.py [pip-audit options]
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pip_audit._service.pypi as pypi_service
from packaging.version import Version
from pip_audit._cli import audit

RELEASE_URL = re.compile(r"https://pypi\.org/pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json")
make_session = pypi_service.caching_session


def session_reading_the_project_document(*args: Any, **kwargs: Any) -> Any:
    session = make_session(*args, **kwargs)
    get_release = session.get

    def get(url: str, **options: Any) -> Any:
        response = get_release(url=url, **options)
        release = RELEASE_URL.fullmatch(url)
        if response.status_code != 404 or release is None:
            return response
        project = get_release(url=f"https://pypi.org/pypi/{release['name']}/json", **options)
        if project.ok and Version(project.json()["info"]["version"]) == Version(release["version"]):
            return project
        return response

    session.get = get
    return session


pypi_service.caching_session = session_reading_the_project_document  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(audit())

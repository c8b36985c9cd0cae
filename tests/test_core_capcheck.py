"""The check of the name patterns plugins declare against JavaScript's v flag (the board's <input pattern>)."""

import json
import os
import shutil
import subprocess

import pytest

from hub.capcheck import vflag_problem
from hub.testing import plugin_host

# valid in Python; what a browser makes of each under the v flag is asked of node below, where it is installed
PATTERNS = [
    r"^[ -~]+$",
    r"^[^{}<>*]+$",
    r"^[a-z-]+$",
    r"^[-a]$",
    r"^[\-a]$",
    r"^[\w-]$",
    r"^[0-9A-Za-z_\-]*$",
    r"^[ #*+,;\-/<=|>0-9A-Z]*$",
    r"^[ #*+,;\-\/<=\|>0-9A-Z]*$",
    r"^[!-\)+-;=?-z\|~](?:[ -\)+-;=?-z\|~]*[!-\)+-;=?-z\|~])?$",
    r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
    r"^\A",
    r"^\-$",
    r"^[\_]$",
    r"^[a..b]$",
    r"^a{2,3}$",
    r"^x}$",
    "a{",
    r"^(?P<x>a)$",
    r"^(?:a|b)$",
    r"^.+$",
]


def test_bundled_name_patterns_work_in_a_browser() -> None:
    host = plugin_host("shure", "sennheiser")
    patterns = set()
    for spec, owner in host.drivers().values():
        for family in spec.families:
            capabilities = host.device_capabilities(owner, family, None)
            for limits in capabilities.commands.values() if capabilities is not None else ():
                if limits.text is not None:
                    patterns.add(limits.text.pattern)
    assert patterns
    assert {pattern: vflag_problem(pattern) for pattern in patterns} == dict.fromkeys(patterns)


def test_the_v_flag_scan_agrees_with_a_javascript_engine() -> None:
    if shutil.which("node") is None:  # every machine of this project's kind has Node.js 20; a laptop may not
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed; CI checks the v-flag scan against a real JavaScript engine")
        pytest.skip("node is not installed")
    script = (
        "const ps = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(ps.map(p => { try { new RegExp('^(?:' + p + ')$', 'v'); return true; }"
        " catch (e) { return false; } })));"
    )
    answer = subprocess.run(
        ["node", "-e", script], input=json.dumps(PATTERNS), capture_output=True, text=True, timeout=30, check=True
    )
    browser = dict(zip(PATTERNS, json.loads(answer.stdout), strict=True))
    assert {pattern: vflag_problem(pattern) is None for pattern in PATTERNS} == browser

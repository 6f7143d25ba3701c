"""One source for the OpenSearch versions: the ones the tests run (`tests/engines/versions.py`)
are the plugin's build defaults and the ones the docs name, so a newcomer's default build installs
on the server the docs tell them was tested."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.engines.versions import OPENSEARCH_VERSIONS

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "opensearch_plugin" / "java" / "pom.xml"
NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_defaults() -> tuple[str, str]:
    """(default build, `-Pos3` build) OpenSearch versions of the plugin's pom."""
    pom = ET.parse(POM).getroot()
    default = pom.find("m:properties/m:opensearch.version", NS)
    os3 = pom.find("m:profiles/m:profile[m:id='os3']/m:properties/m:opensearch.version", NS)
    assert default is not None and os3 is not None
    return str(default.text), str(os3.text)


def test_the_plugin_builds_by_default_for_the_tested_versions() -> None:
    two, three = pom_defaults()
    assert (two, three) == (OPENSEARCH_VERSIONS[0], OPENSEARCH_VERSIONS[-1])
    assert two.startswith("2.") and three.startswith("3.")


def test_docs_name_only_the_tested_versions() -> None:
    """Every OpenSearch x.y.z the build docs mention is one the tests run (the plugin docs list no
    other release as built, tested or default)."""
    tested = set(OPENSEARCH_VERSIONS)
    for doc in (ROOT / "opensearch_plugin" / "java" / "README.md", ROOT / "docs" / "OPENSEARCH.md"):
        named = set(re.findall(r"(?<![\d.~])([23]\.\d+\.\d+)(?![\d.]*\d)", doc.read_text()))
        assert named and named <= tested, (doc.name, sorted(named - tested))
    readme = (ROOT / "README.md").read_text()
    for version in OPENSEARCH_VERSIONS:
        assert f"-Dopensearch.version={version}" in readme

"""The scverse ecosystem entry (scverse-ecosystem.yaml) agrees with pyproject.toml and the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml  # PyYAML: a requirement of dask (the dask and test extras)

ROOT = Path(__file__).resolve().parents[1]
#: the fields of scverse/ecosystem-packages' schema.json, and those it requires
SCHEMA_FIELDS = {
    "name",
    "description",
    "project_home",
    "documentation_home",
    "tutorials_home",
    "install",
    "license",
    "tags",
    "publications",
    "version",
    "authors",
    "test_command",
}
REQUIRED = {
    "name",
    "description",
    "project_home",
    "documentation_home",
    "install",
    "license",
    "tags",
    "version",
    "authors",
}


@pytest.fixture(scope="module")
def entry() -> dict:
    return yaml.safe_load((ROOT / "scverse-ecosystem.yaml").read_text())


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1).strip()


def test_fields_are_the_schemas(entry):
    assert set(entry) <= SCHEMA_FIELDS, set(entry) - SCHEMA_FIELDS


def test_missing_required_fields_are_explained(entry):
    # a required field the repository cannot answer is left out with a comment saying so, never invented
    text = (ROOT / "scverse-ecosystem.yaml").read_text()
    for field in REQUIRED - set(entry):
        assert re.search(rf"^# {field} \(required\): \S", text, re.MULTILINE), field


@pytest.mark.parametrize("field", ["name", "version", "license"])
def test_matches_pyproject(entry, project, field):
    assert entry[field] == project[field]


def test_install_is_the_pypi_name(entry, project):
    assert entry["install"] == {"pypi": project["name"]}


def test_test_command_is_the_readmes(entry):
    assert entry["test_command"] == readme_test_command()
    assert "pytest" in entry["test_command"]


def test_publications_and_tags(entry):
    # the DOI pattern the schema takes from Crossref (DOIs are case-insensitive)
    doi = re.compile(r"^10.\d{4,9}/[-._;()/:A-Z0-9]+$", re.IGNORECASE)
    assert entry["publications"] == ["10.1186/s13059-019-1837-6"]
    assert all(doi.match(d) for d in entry["publications"])
    assert entry["tags"]
    assert len(set(entry["tags"])) == len(entry["tags"])
    assert all(isinstance(t, str) and t for t in entry["tags"])
    assert isinstance(entry["description"], str)
    assert entry["description"].strip()

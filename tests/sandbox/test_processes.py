"""Landing page, conformance and the Method catalogue in CCP's method.json shape."""

from __future__ import annotations

import pytest
from ccp_client import CCP

BUILT_INS = {"fail", "hello", "make-files", "sleep", "word-count"}


def test_landing_and_conformance(ccp: CCP) -> None:
    assert any(link["href"].endswith("/processes") for link in ccp.get("/").json()["links"])
    conforms = ccp.get("/conformance").json()["conformsTo"]
    for name in ("core", "ogc-process-description", "json", "job-list", "dismiss"):
        assert f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{name}" in conforms


def test_process_list_pages_with_a_next_link(ccp: CCP) -> None:
    first = ccp.get("/processes", params={"limit": 2}).json()
    assert len(first["processes"]) == 2
    next_link = next(link["href"] for link in first["links"] if link["rel"] == "next")
    assert next_link.startswith(ccp.url)
    assert "offset=2" in next_link
    ids = {process["id"] for process in ccp.get("/processes").json()["processes"]}
    assert ids == BUILT_INS
    summary = first["processes"][0]
    assert summary["jobControlOptions"] == ["async-execute", "dismiss"]
    assert summary["outputTransmission"] == ["value"]
    assert {"id", "title", "description", "version", "keywords", "metadata", "links"} <= set(summary)


def test_description_has_the_method_json_shape(ccp: CCP) -> None:
    method = ccp.get("/processes/word-count").json()
    image = method["inputs"]["ccpimage"]
    assert image["schema"] == {"type": "string", "default": "bash", "readOnly": True}
    assert image["minOccurs"] == 1
    assert method["inputs"]["mode"]["schema"]["enum"] == ["words", "lines", "chars"]
    scripts = {p["name"]: p["value"] for p in method["additionalParameters"]["parameters"]}
    assert set(scripts) == {"deploy-script", "execute-script"}
    assert any("{{text}}" in line for line in scripts["execute-script"])
    assert {"rel": "compatibleWith", "href": "infrastructures/sandbox-local-bash"}.items() <= method["links"][0].items()
    assert {m["role"] for m in method["metadata"]} == {"author", "category"}
    hello = ccp.get("/processes/hello").json()
    assert hello["inputs"]["api_key"]["schema"]["format"] == "secret"
    assert hello["inputs"]["api_key"]["minOccurs"] == 0


@pytest.mark.parametrize("path", ["/processes/nope", "/processes/nope/execution"])
def test_unknown_method_is_no_such_process(ccp: CCP, path: str) -> None:
    answer = ccp.get(path) if not path.endswith("execution") else ccp.submit("nope")
    assert answer.status_code == 404
    assert answer.json()["type"] == "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-process"

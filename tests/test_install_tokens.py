"""The REST front's bearer token in what the installers create: Elasticsearch's `custom`
inference endpoint keeps it in `secret_parameters`, ml-commons in the connector's `credential`
(tests/test_opensearch_ml_commons.py checks that one on a real cluster), and the native processor
refuses it (its token lives in the OpenSearch keystore, never in pipeline JSON).
"""

from __future__ import annotations

import json
from string import Template

import pytest

from opensearch_plugin.elasticsearch import endpoint_body
from opensearch_plugin.install import connect, install
from opensearch_plugin.options import InstallError, InstallOptions

TOKEN = "rest-front-token"


def test_elasticsearch_endpoint_keeps_the_token_secret() -> None:
    body = endpoint_body("http://10.0.0.5:8080", token=TOKEN)
    settings = body["service_settings"]
    assert settings["secret_parameters"] == {"token": TOKEN}
    # the header names the secret; Elasticsearch substitutes ${token} when it calls
    assert settings["headers"]["Authorization"] == "Bearer ${token}"
    sent = Template(settings["headers"]["Authorization"]).substitute(settings["secret_parameters"])
    assert sent == f"Bearer {TOKEN}"
    assert TOKEN not in json.dumps({k: v for k, v in settings.items() if k != "secret_parameters"})


def test_elasticsearch_endpoint_without_a_token_sends_no_authorization() -> None:
    settings = endpoint_body("http://10.0.0.5:8080")["service_settings"]
    assert "secret_parameters" not in settings
    assert settings["headers"] == {"Content-Type": "application/json"}


def test_native_mode_refuses_a_token_in_pipeline_json() -> None:
    options = InstallOptions(endpoint="http://127.0.0.1:8080", token=TOKEN)
    with pytest.raises(InstallError, match="keystore"):
        install(connect("http://127.0.0.1:9"), options)  # refused before any call


def test_options_never_show_the_token() -> None:
    options = InstallOptions(endpoint="http://127.0.0.1:8080", mode="ml-commons", token=TOKEN)
    assert TOKEN not in repr(options)
    assert TOKEN not in options.fingerprint()
    assert (
        options.fingerprint()
        != InstallOptions(
            endpoint="http://127.0.0.1:8080", mode="ml-commons", token=TOKEN + "2"
        ).fingerprint()
    )

"""Stack configuration files load, and bad values name their key."""

from __future__ import annotations

import pytest

from core.config import ConfigError, parse_stack_config
from stack.config import load_stack_config


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_committed_stack_files_are_valid(env: str) -> None:
    config = load_stack_config(env)
    assert config.environment == env
    assert config.certificate_namespace == config.gateway_namespace


def test_prod_and_staging_write_to_their_own_manifest_roots() -> None:
    assert load_stack_config("staging").manifest_root == "argo-workflow/alga-psa-dev/portal-domains"
    assert load_stack_config("prod").manifest_root == "alga-psa/portal-domains"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"portal-domains:backendPort": "http"}, "backendPort"),
        ({"portal-domains:backendPort": "70000"}, "backendPort"),
        ({"portal-domains:mode": "yolo"}, "mode"),
        ({"portal-domains:gatewayNamespace": "Istio_System"}, "gatewayNamespace"),
        ({"portal-domains:baseDomain": "not a host"}, "baseDomain"),
        ({"portal-domains:acmeChallengeEnabled": "maybe"}, "acmeChallengeEnabled"),
        ({"portal-domains:manifestRoot": "../escape"}, "manifestRoot"),
        ({"portal-domains:manifestRoot": "/abs"}, "manifestRoot"),
        ({"portal-domains:issuerName": "rogue"}, "issuerName"),
        ({"portal-domains:mode": "cluster"}, "kubeconfig"),
        ({"portal-domains:nonsense": "1"}, "nonsense"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config(raw, environment="staging")
    assert err.value.key == key
    assert key in str(err.value)


def test_an_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="prod, staging"):
        load_stack_config("qa")

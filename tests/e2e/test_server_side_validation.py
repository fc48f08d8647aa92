"""Everything we render is accepted by a real API server: strict server-side dry-run.

One loopback kube-apiserver (real cert-manager and Istio CRDs) for the module. Every
manifest goes through adapters.kube_validate (`kubectl apply --server-side
--dry-run=server --validate=strict`): the golden files; the per-tenant YAML that
`stack.export.render_files` writes for the fixture tenants under both environments'
Pulumi config, and each environment's ClusterIssuer; generated desired states; and
`portal-domains export --validate` through the CLI on a stack the real Pulumi engine
produced. It also shows the check can fail: a wrong field or type is rejected with
the API server's own message.

Files (goldens, Pulumi.<env>.yaml) are read when the tests run, never copied here:
the renderer and its goldens change under us.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters.kube_validate import (
    KubectlNotFound,
    KubeValidationUnavailable,
    ValidationProblem,
    validate_manifests,
)
from cli import stack as stack_cli
from cli.exit_codes import ExitCode
from cli.main import main
from core.canonical import (
    canonical_host,
    certificate_secret_name,
    choose_prefix,
    parse_tenant_id,
)
from core.config import StackConfig
from core.hostnames import HostnameError, normalize_hostname
from core.manifests import DomainManifests, Manifest, cluster_issuer, desired_state
from core.records import DomainRecord
from core.status import DEPLOYABLE, DomainStatus
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from loopback.cluster import ClusterInfo, api_request, locate_binaries, running_cluster
from policies.fixtures import fixture_records
from stack.automation import ISSUER_FILE
from stack.config import ENVIRONMENTS, load_stack_config
from stack.export import render_files

pytestmark = pytest.mark.kubernetes

log = logging.getLogger(__name__)

GOLDEN = Path(__file__).parents[1] / "core" / "golden"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    # Every namespace the environments' configs name, plus the ones the goldens use:
    # a namespaced dry-run in a missing namespace is rejected (and we never create
    # namespaces from validation itself).
    namespaces = {"istio-system", "msp"}
    for env in ENVIRONMENTS:
        config = load_stack_config(env)
        namespaces |= {
            config.gateway_namespace,
            config.certificate_namespace,
            config.virtual_service_namespace,
        }
    with running_cluster(tmp_path_factory.mktemp("kube"), progress=log.info) as info:
        for namespace in sorted(namespaces):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            created = api_request(info, "POST", "/api/v1/namespaces", body)
            assert created.status == 201, created.message
        yield info


@pytest.fixture(scope="module")
def kubectl() -> str:
    return str(locate_binaries().kubectl)


Validate = Callable[[Sequence[Mapping[str, Any]]], list[ValidationProblem]]


@pytest.fixture(scope="module")
def validate(cluster: ClusterInfo, kubectl: str) -> Validate:
    def run(documents: Sequence[Mapping[str, Any]]) -> list[ValidationProblem]:
        return validate_manifests(
            documents,
            kubeconfig=cluster.kubeconfig,
            kubectl=kubectl,
            cache_dir=cluster.state_dir / "kubectl-cache",
        )

    return run


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def describe(problems: Sequence[ValidationProblem]) -> str:
    return "\n".join(p.line() for p in problems)


def state_objects(manifests: Sequence[DomainManifests]) -> list[dict[str, Any]]:
    """What stack.automation.state_objects hands render_files, built from the desired state.

    Pulumi keeps a CustomResource's outputs as the object it declared (plus server
    and pulumi fields render_files drops), so the declared documents stand in for
    them here; test_export_validate_through_the_cli covers real engine state.
    """
    return [
        {"slug": m.slug, "urn": f"urn:test::{m.slug}-{doc['kind']}", "outputs": doc}
        for m in manifests
        for doc in m.documents()
    ]


def rendered_documents(
    records: Sequence[DomainRecord], config: StackConfig
) -> tuple[list[Manifest], dict[str, str]]:
    """The desired documents, and the per-tenant files render_files makes of them."""
    manifests = desired_state(records, config)
    files = render_files(state_objects(manifests), environment=config.environment)
    return [doc for m in manifests for doc in m.documents()], files


# --------------------------------------------------------------------------- (a) goldens


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.yaml"))


def test_there_are_golden_files_to_validate() -> None:
    assert golden_files(), f"no golden manifests in {GOLDEN}"


@pytest.mark.parametrize("golden", golden_files(), ids=lambda p: p.name)
def test_every_golden_manifest_is_accepted(golden: Path, validate: Validate) -> None:
    documents = load_documents(golden.read_text())
    assert documents, f"{golden} holds no documents"
    problems = validate(documents)
    assert problems == [], describe(problems)


# --------------------------------------------------------------------------- (b) fixtures


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_exported_yaml_of_the_fixture_tenants_is_accepted(env: str, validate: Validate) -> None:
    config = load_stack_config(env)
    records = fixture_records(config.base_domain)
    expected, files = rendered_documents(records, config)
    assert sorted(files) == sorted(r.prefix for r in records)
    documents = [doc for text in files.values() for doc in load_documents(text)]
    # render_files keeps the objects whole: every desired document reaches a file.
    assert len(documents) == len(expected) >= 3 * len(records)
    assert {d["kind"] for d in documents} >= {"Certificate", "Gateway", "VirtualService"}
    # The environment's shared ClusterIssuer, whether or not render_files exports it.
    if not any(d["kind"] == "ClusterIssuer" for d in documents):
        documents.append(cluster_issuer(config))
    problems = validate(documents)
    assert problems == [], describe(problems)
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "ClusterIssuer"] == [
        config.issuer_name
    ]


# --------------------------------------------------------------------------- (c) property

_SUFFIXES = ["com", "net", "io", "de", "co.uk", "org.au", "jp", "xn--p1ai"]
# Unicode labels go through the same IDNA normalisation the database uses.
_IDN_LABELS = ["bücher", "straße", "портал", "ポータル", "col·legi", "日本語"]
_ldh_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
_label = st.one_of(_ldh_label, _ldh_label, _ldh_label, st.sampled_from(_IDN_LABELS))
# A few shared 7-digit heads make prefix collisions (and lengthening) likely.
_HEADS = ["abc1234", "0000001", "fffffff", "1234567"]
_HEX = "0123456789abcdef"


@st.composite
def vanity_hosts(draw: st.DrawFn, base_domain: str) -> str:
    parts = draw(st.lists(_label, min_size=2, max_size=4))
    raw = ".".join([*parts, draw(st.sampled_from(_SUFFIXES))])
    try:
        return normalize_hostname(raw, base_domain=base_domain)
    except HostnameError:
        assume(False)
        raise  # unreachable: assume(False) aborts the example


@st.composite
def desired_records(draw: st.DrawFn, base_domain: str) -> list[DomainRecord]:
    count = draw(st.integers(min_value=1, max_value=5))
    domains = draw(st.lists(vanity_hosts(base_domain), min_size=count, max_size=count, unique=True))
    records: list[DomainRecord] = []
    taken: set[str] = set()
    for domain in domains:
        head = draw(st.one_of(st.sampled_from(_HEADS), st.text(_HEX, min_size=7, max_size=7)))
        tail = draw(st.text(_HEX, min_size=25, max_size=25))
        value = uuid.UUID(hex=head + tail)
        assume(value.int != 0 and str(value) not in {r.tenant_id for r in records})
        tenant = parse_tenant_id(value)
        prefix = choose_prefix(tenant, taken=taken)
        taken.add(prefix)
        records.append(
            DomainRecord(
                tenant_id=str(tenant),
                prefix=prefix,
                domain=domain,
                canonical_host=canonical_host(prefix, base_domain),
                certificate_secret_name=certificate_secret_name(prefix),
                status=draw(st.sampled_from(sorted(DEPLOYABLE, key=lambda s: s.value))),
            )
        )
    return records


@st.composite
def environments_and_records(draw: st.DrawFn) -> tuple[StackConfig, list[DomainRecord]]:
    config = load_stack_config(draw(st.sampled_from(ENVIRONMENTS)))
    return config, draw(desired_records(config.base_domain))


@settings(max_examples=25, deadline=None)
@given(case=environments_and_records())
def test_every_document_of_a_generated_desired_state_is_accepted(
    validate: Validate, case: tuple[StackConfig, list[DomainRecord]]
) -> None:
    config, records = case
    expected, files = rendered_documents(records, config)
    documents = [doc for text in files.values() for doc in load_documents(text)]
    assert len(documents) == len(expected) == 3 * len(records)
    problems = validate(documents)
    assert problems == [], describe(problems)


# --------------------------------------------------------------------------- (d) rejections


def golden_documents() -> dict[str, dict[str, Any]]:
    """kind -> a golden document of that kind (read now, so regenerated goldens count)."""
    found: dict[str, dict[str, Any]] = {}
    for path in golden_files():
        for doc in load_documents(path.read_text()):
            found.setdefault(doc["kind"], doc)
    return found


def test_a_wrong_field_or_type_is_rejected_with_the_servers_message(
    cluster: ClusterInfo, validate: Validate
) -> None:
    samples = golden_documents()
    certificate = copy.deepcopy(samples["Certificate"])
    # A plausible mistake: a ClusterIssuer reference has no namespace.
    certificate["spec"]["issuerRef"]["namespace"] = certificate["metadata"]["namespace"]
    gateway = copy.deepcopy(samples["Gateway"])
    gateway["spec"]["servers"][0]["port"]["number"] = "443"
    virtual_service = copy.deepcopy(samples["VirtualService"])
    virtual_service["spec"]["httpsRedirect"] = True  # belongs to a Gateway server's tls
    good = copy.deepcopy(samples["VirtualService"])
    good["metadata"]["name"] = "portal-domain-still-fine"

    problems = validate([certificate, good, gateway, virtual_service])

    by_index = {p.index: p for p in problems}
    assert sorted(by_index) == [0, 2, 3], describe(problems)
    cert, gw, vs = by_index[0], by_index[2], by_index[3]
    assert (cert.kind, cert.namespace, cert.name) == (
        "Certificate",
        certificate["metadata"]["namespace"],
        certificate["metadata"]["name"],
    )
    assert ".spec.issuerRef.namespace: field not declared in schema" in cert.message
    assert gw.kind == "Gateway"
    assert ".spec.servers[0].port.number: expected numeric" in gw.message
    assert vs.kind == "VirtualService"
    assert ".spec.httpsRedirect: field not declared in schema" in vs.message
    assert gw.line().startswith(f"Gateway {gateway['metadata']['namespace']}/")
    # Dry-run: nothing was stored, not even the accepted object.
    namespace, name = good["metadata"]["namespace"], good["metadata"]["name"]
    path = f"/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/{name}"
    stored = api_request(cluster, "GET", path)
    assert stored.status == 404, stored.message


def test_a_missing_namespace_is_reported_not_created(
    cluster: ClusterInfo, validate: Validate
) -> None:
    doc = copy.deepcopy(golden_documents()["VirtualService"])
    doc["metadata"]["namespace"] = "no-such-namespace"
    problems = validate([doc])
    assert len(problems) == 1, describe(problems)
    assert problems[0].namespace == "no-such-namespace"
    assert problems[0].reason == "NotFound"
    assert problems[0].message == 'namespaces "no-such-namespace" not found'
    assert api_request(cluster, "GET", "/api/v1/namespaces/no-such-namespace").status == 404


def test_an_unknown_kind_is_a_problem_not_an_error(validate: Validate) -> None:
    doc = {
        "apiVersion": "example.invalid/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "msp"},
    }
    problems = validate([doc])
    assert [(p.kind, p.name) for p in problems] == [("Widget", "w")]
    assert 'no matches for kind "Widget"' in problems[0].message


def test_no_verdict_raises_and_never_shows_the_token(
    cluster: ClusterInfo, kubectl: str, tmp_path: Path
) -> None:
    doc = golden_documents()["Certificate"]
    with pytest.raises(KubectlNotFound):
        validate_manifests([doc], kubeconfig=cluster.kubeconfig, kubectl=str(tmp_path / "none"))

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeValidationUnavailable) as unreachable:
        validate_manifests([doc], kubeconfig=closed, kubectl=kubectl)
    assert unreachable.value.kind.value == "unavailable"
    assert cluster.token not in str(unreachable.value)

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "not-the-token-" + "x" * 20
    refused = tmp_path / "refused.kubeconfig"
    refused.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeValidationUnavailable, match="Unauthorized") as unauthorized:
        validate_manifests([doc], kubeconfig=refused, kubectl=kubectl)
    assert cluster.token not in str(unauthorized.value)


# --------------------------------------------------------------------------- (e) the CLI

CLI_DOMAINS = ["portal.acme.com", "clients.globex.io"]


@pytest.fixture(scope="module")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SQLite database with two DNS-verified tenants, applied by a real `pulumi up`."""
    home = tmp_path_factory.mktemp("home")
    url = f"sqlite:///{home / 'portal-domains.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PORTAL_DOMAINS_HOME", str(home))
        patch.setenv("PORTAL_DOMAINS_DATABASE_URL", url)
        patch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
        patch.delenv("PULUMI_BACKEND_URL", raising=False)
        patch.delenv("KUBECONFIG", raising=False)
        migrate.upgrade(url)
        service = DomainService(
            make_session_factory(make_engine(url)), base_domain="portal.algapsa.com"
        )
        for domain in CLI_DOMAINS:
            tenant = uuid.uuid4()
            service.request(tenant, domain, "operator:test")
            service.record_status(
                tenant,
                expected_status=DomainStatus.PENDING_DNS,
                new_status=DomainStatus.VERIFYING_DNS,
                message="checking",
            )
            service.record_status(
                tenant,
                expected_status=DomainStatus.VERIFYING_DNS,
                new_status=DomainStatus.PENDING_CERTIFICATE,
                message="verified",
            )
        assert main(["up", "--env", "staging", "--yes", "--quiet"]) == 0
        yield home


@pytest.mark.pulumi
def test_export_validate_through_the_cli(
    stack_home: Path,
    cluster: ClusterInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capsys.readouterr()
    out = stack_home / "export"
    argv = ["export", "--env", "staging", "--out", str(out), "--validate"]

    assert main([*argv, "--kubeconfig", str(cluster.kubeconfig), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    validation = report["validation"]
    assert validation["accepted"] is True, validation["problems"]
    assert validation["problems"] == []
    # the tenants' files and cluster-issuer.yaml
    assert validation["files"] == len(CLI_DOMAINS) + 1
    assert validation["objects"] == 3 * len(CLI_DOMAINS) + 1

    # $KUBECONFIG when --kubeconfig is absent; text output.
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "all accepted" in text
    assert f"{3 * len(CLI_DOMAINS) + 1} objects in {len(CLI_DOMAINS) + 1} files" in text


@pytest.mark.pulumi
def test_export_validate_fails_when_the_server_rejects_an_object(
    stack_home: Path,
    cluster: ClusterInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engine's state is fine, so the export is spoiled on its way to the files.
    spoiled_slugs: list[str] = []

    def spoiled(objects: Any, *, environment: str) -> dict[str, str]:
        files = render_files(objects, environment=environment)
        # A tenant's file (not the ClusterIssuer's, which may sort first).
        slug = sorted(name for name in files if name != ISSUER_FILE)[0]
        spoiled_slugs.append(slug)
        header, _, body = files[slug].partition("\n")
        docs = load_documents(body)
        certificate = next(d for d in docs if d["kind"] == "Certificate")
        certificate["spec"]["issuerRef"]["namespace"] = "istio-system"
        files[slug] = header + "\n" + "---\n".join(yaml.safe_dump(d) for d in docs)
        return files

    monkeypatch.setattr(stack_cli, "render_files", spoiled)
    capsys.readouterr()
    out = stack_home / "spoiled"
    argv = ["export", "--env", "staging", "--out", str(out), "--validate"]

    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig), "--json"])
    assert code == ExitCode.FAILED
    validation = json.loads(capsys.readouterr().out)["validation"]
    assert validation["accepted"] is False
    [problem] = validation["problems"]
    assert problem["kind"] == "Certificate"
    assert Path(problem["file"]).name == f"{spoiled_slugs[0]}.yaml"
    assert ".spec.issuerRef.namespace: field not declared in schema" in problem["message"]

    assert main([*argv, "--kubeconfig", str(cluster.kubeconfig)]) == ExitCode.FAILED
    text = capsys.readouterr().out
    assert "rejected: " in text
    assert "field not declared in schema" in text
    assert "1 rejected" in text


def test_export_validate_needs_a_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    argv = ["export", "--env", "staging", "--out", str(tmp_path / "out")]
    assert main([*argv, "--validate"]) == ExitCode.INVALID_INPUT
    assert "--kubeconfig" in capsys.readouterr().err
    missing = str(tmp_path / "nope")
    assert main([*argv, "--validate", "--kubeconfig", missing]) == ExitCode.INVALID_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, "--kubeconfig", missing]) == ExitCode.INVALID_INPUT
    assert "only used with --validate" in capsys.readouterr().err


def test_validate_yaml_files_names_the_file_of_each_problem(
    cluster: ClusterInfo, kubectl: str, tmp_path: Path
) -> None:
    samples = golden_documents()
    good, bad = tmp_path / "aaa.yaml", tmp_path / "bbb.yaml"
    good.write_text(yaml.safe_dump_all([samples["Certificate"], samples["Gateway"]]))
    wrong = copy.deepcopy(samples["Gateway"])
    wrong["spec"]["servers"][0]["port"]["number"] = "443"
    bad.write_text(yaml.safe_dump_all([samples["VirtualService"], wrong]))
    result = stack_cli.validate_yaml_files(
        [good, bad], kubeconfig=cluster.kubeconfig, kubectl=kubectl
    )
    assert (result.files, result.objects) == (2, 4)
    assert [(path, p.kind) for path, p in result.problems] == [(bad, "Gateway")]
    assert "1 rejected" in result.summary()

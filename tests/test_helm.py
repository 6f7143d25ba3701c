"""The Helm chart (deploy/helm/erank-search), rendered by real helm and checked for what an
operator relies on: every manifest valid against Kubernetes' schemas, gRPC probes on the gRPC
port, a headless Service the clients balance over with round_robin, GPUs = tensor parallel size,
secrets as mounted files (never tokens in arguments), a termination period above drain + grace,
scrapable metrics, and container arguments the real ``erank`` command accepts.

helm is built from its Go module on first use (tests/helm_tool.py: minutes cold, cached after).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer.core
import typer.main
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from connector.rewrite.config import parse_config
from connector.security_options import client_security
from erank.security import server_credentials
from erank.settings import ServerSettings
from erank_cli.app import app
from erank_contract.client import RERANKER_SERVICE, _channel_args
from tests.certs import make_certs
from tests.helm_tool import render

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "erank-search"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"
NAMESPACE = "search"
# The first test builds helm on a fresh machine (tests/helm_tool.py): minutes, more when busy.
pytestmark = pytest.mark.timeout(1800)
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
Manifest = dict[str, Any]


def doc_block(path: Path, first_line: str) -> str:
    """The fenced block of ``path`` whose first line is ``first_line`` (what the doc shows)."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.DOTALL):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"{path.name} has no block starting {first_line!r}")


def secure_values() -> dict[str, Any]:
    """docs/DEPLOY.md's values for TLS, mutual TLS, tokens, replicas and tensor parallelism."""
    values: dict[str, Any] = yaml.safe_load(doc_block(DEPLOY_DOC, "# secure-values.yaml"))
    return values


@pytest.fixture(scope="module")
def plain() -> list[Manifest]:
    return render(CHART, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def secure() -> list[Manifest]:
    return render(CHART, secure_values(), namespace=NAMESPACE)


def find(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    [found] = [
        m
        for m in manifests
        if m["kind"] == kind and m["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def pod(manifests: list[Manifest], component: str) -> tuple[Manifest, Manifest]:
    """(pod spec, its one container) of a component's Deployment."""
    spec = find(manifests, "Deployment", component)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return spec, container


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def secret_of(spec: Manifest, container: Manifest, path: str) -> tuple[str, str]:
    """(Secret name, key) that the file ``path`` in ``container`` is mounted from."""
    for mount in container["volumeMounts"]:
        folder = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(folder):
            [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            file = path.removeprefix(folder)
            items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
            return volume["secret"]["secretName"], items.get(file, file)
    raise AssertionError(f"{path} is not on any mount of {container['name']}")


def parse_cli(container: Manifest) -> tuple[str, dict[str, Any]]:
    """(sub-command, its parsed options): the real ``erank`` parser, nothing run. A renamed
    or removed flag, or a value of the wrong type, fails here as it would in the pod."""
    assert container["command"] == ["erank"]
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    name, *rest = container["args"]
    assert name in group.commands, f"erank has no sub-command {name}"
    with group.commands[name].make_context(f"erank {name}", list(rest)) as ctx:
        return name, ctx.params


def test_every_manifest_validates_against_kubernetes_schemas(
    plain: list[Manifest], secure: list[Manifest]
) -> None:
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in plain)
    assert kinds == sorted(
        [("ConfigMap", "erank-erank-search-proxy")]
        + [
            (k, f"erank-erank-search-{c}")
            for k in ("Deployment", "Service")
            for c in ("scoring", "proxy", "rest")
        ]
    )
    # the chart makes no Secret, with or without TLS and tokens: it only mounts the operator's
    assert sorted(m["kind"] for m in secure) == sorted(m["kind"] for m in plain)
    for manifest in plain + secure:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("scoring.tensorParalelSize=2", "additional properties 'tensorParalelSize' not allowed"),
        ("scoring.tensorParallelSize=0", "tensorParallelSize': minimum: got 0, want 1"),
        ("scoring.env.MAX_NUM_SEQS=8", "'MAX_NUM_SEQS' does not match pattern '^ERANK_"),
        ("proxy.metrics.prot=9400", "at '/proxy/metrics': additional properties 'prot'"),
        ("rest.metrics.port=0", "at '/rest/metrics/port': minimum: got 0, want 1"),
        ("rest.metrics.enabled=yes", "at '/rest/metrics/enabled': got string, want boolean"),
        ("scoring.scoreCache.url=http://cache:6379", "'http://cache:6379' does not match pattern"),
    ],
)
def test_values_schema_refuses_what_would_be_ignored(setting: str, message: str) -> None:
    """values.schema.json: a misspelt key or an impossible value stops the install, named."""
    with pytest.raises(AssertionError, match=re.escape(message)):
        render(CHART, {}, "--set", setting)


def test_probes_ask_grpc_health_on_the_grpc_port(plain: list[Manifest]) -> None:
    _, container = pod(plain, "scoring")
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
    assert flag(container["args"], "--port") == str(port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # the server turns this service SERVING only after the model answered its warm-up
        assert container[probe]["grpc"] == {"port": port, "service": RERANKER_SERVICE}
    # the model load may take many minutes: the startup probe allows 20
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1200


def test_headless_service_and_round_robin_dns_targets(
    plain: list[Manifest], secure: list[Manifest]
) -> None:
    for manifests in (plain, secure):
        service = find(manifests, "Service", "scoring")
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is False  # only SERVING pods
        scoring = find(manifests, "Deployment", "scoring")["spec"]["template"]["metadata"]
        assert service["spec"]["selector"].items() <= scoring["labels"].items()
        [grpc_port] = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
        name = service["metadata"]["name"]
        target = f"dns:///{name}.{NAMESPACE}.svc.cluster.local:{grpc_port}"
        for component in ("proxy", "rest"):
            assert flag(pod(manifests, component)[1]["args"], "--reranker") == target
    # how our client dials that target: as given, balanced with round_robin
    dialled, options = _channel_args(target, 1 << 20)
    assert dialled == target
    config = json.loads(str(dict(options)["grpc.service_config"]))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [retry] = [m["retryPolicy"] for m in config["methodConfig"]]
    assert retry["retryableStatusCodes"] == ["UNAVAILABLE"]  # tried on another server


def test_gpu_limit_is_the_tensor_parallel_size(secure: list[Manifest]) -> None:
    tensor_parallel = secure_values()["scoring"]["tensorParallelSize"]
    _, container = pod(secure, "scoring")
    assert flag(container["args"], "--tensor-parallel-size") == str(tensor_parallel)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == tensor_parallel
    deployment = find(secure, "Deployment", "scoring")
    assert deployment["spec"]["replicas"] == secure_values()["scoring"]["replicas"]


def test_secrets_are_mounted_files_and_tokens_never_arguments(secure: list[Manifest]) -> None:
    values = secure_values()
    server_secret, client_secret = values["tls"]["serverSecret"], values["tls"]["clientSecret"]
    token_secret = values["token"]["secretName"]
    spec, serve = pod(secure, "scoring")
    args = serve["args"]
    assert secret_of(spec, serve, flag(args, "--tls-cert")) == (server_secret, "tls.crt")
    assert secret_of(spec, serve, flag(args, "--tls-key")) == (server_secret, "tls.key")
    assert secret_of(spec, serve, flag(args, "--tls-client-ca")) == (client_secret, "ca.crt")
    assert secret_of(spec, serve, flag(args, "--token-file")) == (token_secret, "token")

    spec, rest = pod(secure, "rest")
    args = rest["args"]
    assert secret_of(spec, rest, flag(args, "--reranker-ca")) == (server_secret, "ca.crt")
    assert secret_of(spec, rest, flag(args, "--reranker-cert")) == (client_secret, "tls.crt")
    assert secret_of(spec, rest, flag(args, "--reranker-key")) == (client_secret, "tls.key")
    assert secret_of(spec, rest, flag(args, "--reranker-token-file")) == (token_secret, "token")
    [rest_token] = [e for e in rest["env"] if e["name"] == "ERANK_REST_TOKEN"]
    assert rest_token["valueFrom"]["secretKeyRef"]["name"] == values["rest"]["tokenSecret"]

    spec, proxy = pod(secure, "proxy")
    [config_map] = [m for m in secure if m["kind"] == "ConfigMap"]
    scoring_server = yaml.safe_load(config_map["data"]["proxy.yaml"])["scoring_server"]
    assert secret_of(spec, proxy, scoring_server["tls_ca"]) == (server_secret, "ca.crt")
    assert secret_of(spec, proxy, scoring_server["tls_cert"]) == (client_secret, "tls.crt")
    assert secret_of(spec, proxy, scoring_server["token_file"]) == (token_secret, "token")
    assert "token" not in scoring_server  # a file path only, never the token itself

    for spec, container in (pod(secure, c) for c in ("scoring", "proxy", "rest")):
        secrets = [v["secret"] for v in spec["volumes"] if "secret" in v]
        assert secrets and all(s["defaultMode"] == 0o440 for s in secrets)
        assert not any(
            "token" in a and not a.endswith("-file")
            for a in container["args"][1:]
            if a.startswith("--")
        )
        for env in container.get("env", []):
            assert "TOKEN" not in env["name"] or "value" not in env


def test_shared_score_cache_url_from_a_secret_or_the_values() -> None:
    """scoring.scoreCache: docs/DEPLOY.md's values take the URL from the operator's Secret (it
    may hold a password: never a value or a flag); a URL without one may be a plain value that
    erank accepts; none by default; url and urlSecret together are refused, named."""

    def cache_env(manifests: list[Manifest]) -> list[Manifest]:
        _, container = pod(manifests, "scoring")
        assert not any("cache-url" in arg for arg in container["args"])
        return [e for e in container["env"] if e["name"] == "ERANK_SCORE_CACHE_URL"]

    assert cache_env(render(CHART, namespace=NAMESPACE)) == []
    documented = yaml.safe_load(doc_block(DEPLOY_DOC, "# cache-values.yaml"))
    manifests = render(CHART, documented, namespace=NAMESPACE)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSIONS[-1], strict=True)
    [from_secret] = cache_env(manifests)
    secret = documented["scoring"]["scoreCache"]["urlSecret"]
    assert from_secret["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "url"}}
    url = "valkey://valkey.search.svc.cluster.local:6379/0"
    [plain] = cache_env(render(CHART, {"scoring": {"scoreCache": {"url": url}}}))
    assert plain == {"name": "ERANK_SCORE_CACHE_URL", "value": url}
    assert ServerSettings(score_cache_url=plain["value"]).score_cache_url is not None
    both = {"scoring": {"scoreCache": {"url": url, "urlSecret": secret}}}
    with pytest.raises(AssertionError, match="give url or urlSecret, not both"):
        render(CHART, both)


def test_termination_period_outlasts_drain_and_grace(
    plain: list[Manifest], secure: list[Manifest]
) -> None:
    for manifests in (plain, secure):
        spec, container = pod(manifests, "scoring")
        env = {e["name"]: e.get("value") for e in container["env"]}
        drain, grace = float(env["ERANK_SHUTDOWN_DRAIN_S"]), float(env["ERANK_SHUTDOWN_GRACE_S"])
        assert spec["terminationGracePeriodSeconds"] > drain + grace
        if manifests is plain:  # docs/DEPLOY.md: 10 + 30 + 15
            assert (drain, grace, spec["terminationGracePeriodSeconds"]) == (10, 30, 55)
        # readiness notices NOT_SERVING well inside the drain: the pod leaves DNS first
        readiness = container["readinessProbe"]
        assert readiness["periodSeconds"] * readiness["failureThreshold"] < drain
        # a rolling update needs no GPU beyond the replicas'
        strategy = find(manifests, "Deployment", "scoring")["spec"]["strategy"]
        assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


COMPONENTS = ("scoring", "proxy", "rest")


@pytest.mark.parametrize("component", COMPONENTS)
def test_metrics_listen_where_prometheus_can_scrape(
    plain: list[Manifest], secure: list[Manifest], component: str
) -> None:
    """Each of the three serves /metrics where Prometheus reaches it: the flags as the real
    ``erank`` parses them, the pod's port and annotations, and its Service's port."""
    for manifests in (plain, secure):
        _, container = pod(manifests, component)
        _, params = parse_cli(container)
        assert params["metrics_host"] == "0.0.0.0"  # 127.0.0.1 is unreachable from outside
        port = params["metrics_port"]
        assert port == 9400  # values.yaml's default, docs/DEPLOY.md's
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
        template = find(manifests, "Deployment", component)["spec"]["template"]["metadata"]
        annotations = template["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (
            str(port),
            "/metrics",
        )
        service_ports = find(manifests, "Service", component)["spec"]["ports"]
        assert {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"} in (
            service_ports
        )


def test_metrics_disabled_leave_no_trace() -> None:
    """``<component>.metrics.enabled=false``: no flag, no port, no scrape annotation, and the
    manifests still valid (the REST pod then has no annotations at all)."""
    settings = ",".join(f"{c}.metrics.enabled=false" for c in COMPONENTS)
    manifests = render(CHART, {}, "--set", settings)
    for component in COMPONENTS:
        _, container = pod(manifests, component)
        _, params = parse_cli(container)
        assert (params["metrics_port"], params["metrics_host"]) == (None, None)
        assert all(p["name"] != "metrics" for p in container["ports"])
        service_ports = find(manifests, "Service", component)["spec"]["ports"]
        assert all(p["name"] != "metrics" for p in service_ports)
        template = find(manifests, "Deployment", component)["spec"]["template"]["metadata"]
        assert not any(k.startswith("prometheus.io/") for k in template.get("annotations") or {})
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSIONS[-1], strict=True)


def test_container_arguments_are_what_erank_accepts(
    plain: list[Manifest], secure: list[Manifest]
) -> None:
    fields = ServerSettings.model_fields
    for manifests in (plain, secure):
        name, params = parse_cli(pod(manifests, "scoring")[1])
        assert name == "serve"
        given = {k: v for k, v in params.items() if v is not None and k in fields}
        env = {e["name"]: e["value"] for e in pod(manifests, "scoring")[1]["env"]}
        erank_env = {
            k.removeprefix("ERANK_").lower(): v for k, v in env.items() if k.startswith("ERANK_")
        }
        assert erank_env.keys() <= fields.keys()
        settings = ServerSettings.model_validate({**erank_env, **given})
        assert settings.host == "0.0.0.0"

        name, params = parse_cli(pod(manifests, "rest")[1])
        assert name == "rest"
        client_security(
            *(
                params[f"reranker_{k}"]
                for k in ("tls", "ca", "cert", "key", "server_name", "token_file")
            )
        )

        name, params = parse_cli(pod(manifests, "proxy")[1])
        assert (name, params["config"]) == ("proxy", Path("/etc/erank/proxy/proxy.yaml"))
        [config_map] = [m for m in manifests if m["kind"] == "ConfigMap"]
        parse_config(yaml.safe_load(config_map["data"]["proxy.yaml"]))

    # the check bites: a flag erank does not know fails as it would in the pod
    _, serve = pod(plain, "scoring")
    with pytest.raises(Exception, match="No such option: --tensor-parallel"):
        parse_cli({**serve, "args": [*serve["args"], "--tensor-parallel", "2"]})


@pytest.fixture
def mtls_health_server(tmp_path: Path) -> Iterator[tuple[Any, int, Any]]:
    """A real gRPC server with the health service only, mutual TLS by our own
    ``server_credentials``: what the exec probe talks to in a pod (the engine plays no part)."""
    certs = make_certs(tmp_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = server_credentials(certs.server.cert, certs.server.key, certs.ca)
    assert credentials is not None
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield servicer, port, certs
    server.stop(None)


def test_tls_probe_reports_the_servers_health(mtls_health_server: tuple[Any, int, Any]) -> None:
    """With TLS the kubelet's gRPC probe cannot verify or present a certificate: the chart's
    exec probe asks the same question with the mounted CA and client certificate."""
    servicer, port, certs = mtls_health_server
    values = {
        "scoring": {"port": port},
        "tls": {"enabled": True, "mutual": True, "serverName": "localhost"},
    }
    _, container = pod(render(CHART, values), "scoring")
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    script = (
        command[2]
        .replace("/etc/erank/tls/ca.crt", str(certs.ca))
        .replace("/etc/erank/client-tls/tls.crt", str(certs.client.cert))
        .replace("/etc/erank/client-tls/tls.key", str(certs.client.key))
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": ""}

    def probe() -> tuple[int, bytes]:
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, timeout=60
        )
        return done.returncode, done.stderr

    servicer.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    # loading or draining: not ready, and it got that answer (no TLS failure, no traceback)
    assert probe() == (1, b"")
    servicer.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert probe() == (0, b"")


def test_readme_install_command_renders() -> None:
    """README's "Scaling out with the chart" command, as ``helm template`` with its flags."""
    command = doc_block(ROOT / "README.md", "helm install erank-search deploy/helm/erank-search")
    words = command.replace("\\\n", " ").split()
    manifests = render(CHART, {}, *words[4:])
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSIONS[-1], strict=True)
    sets = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("--"))
    scoring = find(manifests, "Deployment", "scoring")
    assert scoring["spec"]["replicas"] == int(sets["scoring.replicas"])
    gpus = scoring["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpus["nvidia.com/gpu"] == int(sets["scoring.tensorParallelSize"])


def _number(cell: str) -> float:
    return float(cell.split()[0])


def test_deploy_doc_memory_table_adds_up() -> None:
    """docs/DEPLOY.md's GPU memory table: weights = parameters x 2 bytes (bf16), KV cache per
    token = 2 x layers x KV heads x head dim x 2 bytes, room = 0.9 x GPU - weights / GPUs."""
    rows = [
        line.split("|")[1:-1]
        for line in DEPLOY_DOC.read_text().splitlines()
        if line.startswith("| ERank-")
    ]
    assert {r[0].strip() for r in rows} == {"ERank-4B", "ERank-14B", "ERank-32B"}
    for model, params, shape, weights, kv, gpus, per_gpu, room in rows:
        layers, kv_heads, head_dim = (int(x) for x in shape.split("×"))
        count, memory = (_number(x) for x in gpus.split("×"))
        assert _number(weights) == pytest.approx(_number(params) * 2), model
        assert _number(kv) == 2 * layers * kv_heads * head_dim * 2 / 1024, model
        assert kv_heads % count == 0, f"{model}: tensor parallel size must divide KV heads"
        assert _number(per_gpu) == pytest.approx(_number(weights) / count), model
        assert _number(room) == pytest.approx(0.9 * memory - _number(per_gpu)), model
        assert _number(room) > 5, model
    text = " ".join(DEPLOY_DOC.read_text().split())
    # the prose on what does not fit: ERank-32B on one 80 GB GPU, ERank-14B on 2 x 24 GB
    assert f"leave {0.9 * 80 - 65.6:.1f} GB" in text
    assert f"2 × 24 GB leaves {0.9 * 24 - 29.6 / 2:.1f} GB per GPU" in text


def test_probes_of_the_adapters_and_the_engine_mounts(plain: list[Manifest]) -> None:
    _, rest = pod(plain, "rest")
    # ready only while GET /health says a scoring server is SERVING
    assert rest["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    _, proxy = pod(plain, "proxy")
    assert proxy["readinessProbe"]["tcpSocket"] == {"port": "http"}
    spec, serve = pod(plain, "scoring")
    [shm] = [v for v in spec["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "shm", "mountPath": "/dev/shm"} in serve["volumeMounts"]


def test_dockerfile_installs_what_the_chart_runs(plain: list[Manifest]) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    env = {e["name"]: e.get("value") for e in pod(plain, "scoring")[1]["env"]}
    assert f"ENV HF_HOME={env['HF_HOME']}" in dockerfile
    # serve needs [server,vllm]; proxy and rest need [connector]
    assert '"/src[server,vllm,connector]"' in dockerfile
    spec, _ = pod(plain, "scoring")
    assert f"USER {spec['securityContext']['runAsUser']}" in dockerfile
    assert 'ENTRYPOINT ["erank"]' in dockerfile


def test_the_docs_name_the_objects_the_chart_renders() -> None:
    """Every ``<fullname>-NAME`` that DEPLOY.md, the README and values.yaml name (the scoring
    Service TLS certificates must name) is an object the chart renders, for a release whose
    name holds the chart's (``erank-search``) and for one whose name does not (``prod``)."""
    named: set[str] = set()
    for path in (DEPLOY_DOC, ROOT / "README.md", CHART / "values.yaml"):
        text = path.read_text()
        assert "<release>-scoring" not in text, path
        named |= set(re.findall(r"<fullname>-([a-z][a-z-]*[a-z])", text))
    assert "scoring" in named
    for release, fullname in (("erank-search", "erank-search"), ("prod", "prod-erank-search")):
        rendered = {m["metadata"]["name"] for m in render(CHART, release=release)}
        assert {f"{fullname}-{name}" for name in named} <= rendered, rendered

